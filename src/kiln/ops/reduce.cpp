// var, logsumexp, amax, max/min (values and indices) and argmax. Each lays its input out as
// contiguous rows (kept dims first, reduced dims last: no copy in the hot case of reducing the
// trailing dims of a contiguous tensor) and reduces every row. A row is cut into fixed chunks
// whose partial results are combined in chunk order, so long rows use every thread and results
// never depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/autograd_record.h"
#include "kiln/ops/cpu/float_kernels.h"
#include "kiln/ops/cpu/vec_math.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/reduce.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::ops {

namespace {

constexpr int64_t kRowChunk = 1 << 14;  // elements per partial result; fixed for determinism
constexpr int64_t kReduceGrain = 1 << 14;

// The input seen as contiguous (rows, len) and how to map row-layout tensors back.
struct Rows {
  Tensor data;                 // contiguous (rows, len) in the compute dtype
  int64_t rows = 1, len = 1;
  // Column layout (inner > 1): data is the input itself, contiguous, viewed as (outer, len, inner)
  // with rows = outer * inner; used by the extremum ops to avoid a transposing copy.
  int64_t inner = 1;
  Shape in_shape;
  Shape kept_shape;            // keepdim result shape (1 at reduced dims)
  Shape squeezed_shape;        // result shape without keepdim
  Shape perm_shape;            // data's logical shape: kept dims, then reduced dims
  std::vector<int64_t> order;  // input dim at each position of perm_shape

  const Shape& out_shape(bool keepdim) const { return keepdim ? kept_shape : squeezed_shape; }

  // A (rows, len) contiguous tensor viewed (and copied when permuted) in the input's dim order.
  Tensor unpermute(const Tensor& t) const {
    Strides cs = contiguous_strides(perm_shape), st(in_shape.size());
    for (size_t i = 0; i < order.size(); ++i) st[order[i]] = cs[i];
    return contiguous_raw(t.as_strided(in_shape, st, t.offset()));
  }
};

Rows to_rows(const Tensor& x, const Dims& dims, DType compute, const char* op, bool allow_columns = false) {
  Rows r;
  r.in_shape = x.shape();
  std::vector<bool> reduced(x.dim(), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, std::max<int64_t>(x.dim(), 1), op);
    if (x.dim() == 0) continue;
    KILN_CHECK(!reduced[w], op, ": dimension ", d, " listed twice in ", shape_str(dims));
    reduced[w] = true;
  }
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t d = 0; d < x.dim(); ++d)
      if (reduced[d] == (pass == 1)) r.order.push_back(d);
  Tensor xc = to_dtype_raw(x, compute);
  Strides st;
  for (int64_t d : r.order) {
    r.perm_shape.push_back(x.shape()[d]);
    st.push_back(xc.strides()[d]);
    if (reduced[d]) r.len *= x.shape()[d];
  }
  for (int64_t d = 0; d < x.dim(); ++d) {
    r.kept_shape.push_back(reduced[d] ? 1 : x.shape()[d]);
    if (!reduced[d]) r.squeezed_shape.push_back(x.shape()[d]);
  }
  r.rows = numel(r.squeezed_shape);
  // Reduced dims forming one block [a, b) of a contiguous input, with kept dims after it.
  int64_t a = 0, b = 0;
  while (a < x.dim() && !reduced[a]) ++a;
  for (b = a; b < x.dim() && reduced[b];) ++b;
  bool block = std::none_of(reduced.begin() + b, reduced.end(), [](bool v) { return v; });
  if (allow_columns && block && b < x.dim() && xc.is_contiguous() && r.len > 1) {
    r.inner = numel(Shape(x.shape().begin() + b, x.shape().end()));
    if (r.inner > 1) {
      r.data = xc;
      return r;
    }
    r.inner = 1;
  }
  r.data = contiguous_raw(xc.as_strided(r.perm_shape, st, xc.offset()));
  return r;
}

// Calls finish(row, partial) with part(chunk_ptr, n, begin) computed over fixed chunks of each
// row (begin = the chunk's first column) and merged left to right with combine(earlier, later).
template <typename P, typename T, typename Part, typename Combine, typename Finish>
void reduce_rows(const T* x, int64_t rows, int64_t len, Part part, Combine combine, Finish finish) {
  int64_t chunks = std::max<int64_t>(1, num_chunks(len, kRowChunk));
  if (chunks == 1) {
    parallel_for(0, rows, std::max<int64_t>(1, kReduceGrain / std::max<int64_t>(len, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) finish(r, part(x + r * len, len, int64_t{0}));
    });
    return;
  }
  std::vector<P> partial(static_cast<size_t>(rows * chunks));
  parallel_for(0, rows * chunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t item = lo; item < hi; ++item) {
      int64_t r = item / chunks, begin = (item % chunks) * kRowChunk;
      partial[item] = part(x + r * len + begin, std::min(kRowChunk, len - begin), begin);
    }
  });
  for (int64_t r = 0; r < rows; ++r) {
    P acc = partial[r * chunks];
    for (int64_t c = 1; c < chunks; ++c) acc = combine(acc, partial[r * chunks + c]);
    finish(r, acc);
  }
}

// Sum of f(x[i]) in f64 over 8 independent lanes: a fixed order the compiler can vectorise.
template <typename T, typename F>
double lane_sum(const T* x, int64_t n, F f) {
  double lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) lanes[k] += f(x[i + k]);
  for (; i < n; ++i) lanes[i & 7] += f(x[i]);
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

// ---------------------------------------------------------------- max / min

template <typename T>
struct Extremum {
  T value;
  int64_t index;  // within the row
};

template <bool kMax, typename T>
inline bool better(T v, T current) {  // strictly better, and NaN beats any number (as in PyTorch)
  return (kMax ? v > current : v < current) || (v != v && current == current);
}

// One pass keeping the first extreme. The branch is taken only at a new record (a handful of
// times per row on real data), so it predicts well; NaN is tracked with a flag off the hot path.
// (Measured faster here than branch-free blends, which GCC keeps scalar.)
template <bool kMax, typename T>
Extremum<T> scan_extremum(const T* x, int64_t n) {
  T m = x[0];
  int64_t at = 0;
  bool nan = m != m;
  for (int64_t i = 1; i < n; ++i) {
    T v = x[i];
    if (kMax ? v > m : v < m) {
      m = v;
      at = i;
    }
    nan |= v != v;
  }
  if (nan && m == m) {  // the first NaN wins
    at = 0;
    while (x[at] == x[at]) ++at;
    m = x[at];
  }
  return {m, at};
}

// The column layout: for each of `inner` columns, the first extreme down `len` rows. Threads split
// (outer, column block) items; each walks its rows in order.
template <bool kMax, typename T>
void extremum_columns(const T* x, int64_t outer, int64_t len, int64_t inner, T* pv, int64_t* pi) {
  constexpr int64_t kCols = 256;
  int64_t blocks = num_chunks(inner, kCols);
  int64_t grain = std::max<int64_t>(1, kReduceGrain / (len * kCols));
  parallel_for(0, outer * blocks, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t item = lo; item < hi; ++item) {
      int64_t o = item / blocks, j0 = (item % blocks) * kCols, w = std::min(kCols, inner - j0);
      const T* base = x + o * len * inner + j0;
      T* v = pv + o * inner + j0;
      int64_t* at = pi + o * inner + j0;
      for (int64_t j = 0; j < w; ++j) {
        v[j] = base[j];
        at[j] = 0;
      }
      for (int64_t l = 1; l < len; ++l) {
        const T* row = base + l * inner;
        for (int64_t j = 0; j < w; ++j)
          if (better<kMax>(row[j], v[j])) {
            v[j] = row[j];
            at[j] = l;
          }
      }
    }
  });
}

// values (compute dtype, kept shape) and i64 indices of the extremum of every row.
template <bool kMax>
std::pair<Tensor, Tensor> extremum_rows(const Rows& r, DType compute, const char* op) {
  Tensor values = Tensor::empty(r.kept_shape, compute), indices = Tensor::empty(r.kept_shape, DType::i64);
  if (r.rows == 0) return {values, indices};
  int64_t* pi = indices.data<int64_t>();
  dispatch_numeric(compute, op, [&]<typename T>() {
    T* pv = values.data<T>();
    if (r.inner > 1) {
      extremum_columns<kMax>(r.data.data<T>(), r.rows / r.inner, r.len, r.inner, pv, pi);
      return;
    }
    reduce_rows<Extremum<T>>(
        r.data.data<T>(), r.rows, r.len,
        [](const T* x, int64_t n, int64_t begin) {
          Extremum<T> e = scan_extremum<kMax>(x, n);
          e.index += begin;
          return e;
        },
        [](Extremum<T> a, Extremum<T> b) {  // a comes first: b must be strictly better
          return better<kMax>(b.value, a.value) ? b : a;
        },
        [&](int64_t row, Extremum<T> e) {
          pv[row] = e.value;
          pi[row] = e.index;
        });
  });
  return {values, indices};
}

DType extremum_compute_dtype(const Tensor& x, const char* op) {
  KILN_CHECK(x.defined(), op, ": input is undefined");
  KILN_CHECK_TYPE(x.dtype() != DType::b8, op, ": not implemented for bool tensors");
  return x.dtype() == DType::f16 || x.dtype() == DType::bf16 ? DType::f32 : x.dtype();
}

// g[row] goes to position idx[row] of its row; everything else gets zero.
Tensor pick_backward(const Tensor& g, const Tensor& idx, const Rows& r) {
  Tensor gc = contiguous_raw(g);
  if (r.inner > 1) {  // column layout: position (o, idx, j) of the contiguous input
    Tensor gx = Tensor::zeros(r.in_shape, g.dtype());
    const int64_t* pi = idx.data<int64_t>();
    dispatch_all(g.dtype(), [&]<typename T>() {
      T* px = gx.data<T>();
      const T* pg = gc.data<T>();
      for (int64_t i = 0; i < r.rows; ++i) {
        int64_t o = i / r.inner, j = i % r.inner;
        px[(o * r.len + pi[i]) * r.inner + j] = pg[i];
      }
    });
    return gx;
  }
  Tensor rows = Tensor::zeros({r.rows, r.len}, g.dtype());
  const int64_t* pi = idx.data<int64_t>();
  dispatch_all(g.dtype(), [&]<typename T>() {
    T* pr = rows.data<T>();
    const T* pg = gc.data<T>();
    for (int64_t i = 0; i < r.rows; ++i) pr[i * r.len + pi[i]] = pg[i];
  });
  return r.unpermute(rows);
}

// The metadata of a Rows without its data, to keep in a backward closure.
std::shared_ptr<Rows> layout_only(const Rows& r) {
  auto p = std::make_shared<Rows>(r);
  p->data = Tensor();
  return p;
}

template <bool kMax>
std::pair<Tensor, Tensor> max_min(const Tensor& x, int64_t dim, bool keepdim, const char* op) {
  DType compute = extremum_compute_dtype(x, op);
  Rows r = to_rows(x, {dim}, compute, op, /*allow_columns=*/true);
  KILN_CHECK(r.len > 0 || r.rows == 0, op, ": cannot reduce over dimension ", dim, " of size 0 in ",
             shape_str(x.shape()));
  auto [values, indices] = extremum_rows<kMax>(r, compute, op);
  values = to_dtype_raw(values, x.dtype());
  Shape out = r.out_shape(keepdim);
  values = values.as_strided(out, contiguous_strides(out), values.offset());
  indices = indices.as_strided(out, contiguous_strides(out), 0);
  if (any_requires_grad({x})) {
    record(op, {x}, {&values, &indices},
           [r_ = layout_only(r), idx_ = SavedTensor(indices, op)](const std::vector<Tensor>& grads, const std::vector<bool>&) {
             return std::vector<Tensor>{pick_backward(grads[0], idx_.get(), *r_)};
           });
  }
  return {values, indices};
}


}  // namespace

std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) { return max_min<true>(x, dim, keepdim, "max"); }
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) { return max_min<false>(x, dim, keepdim, "min"); }

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  DType compute = extremum_compute_dtype(x, "argmax");
  Rows r = to_rows(x, {dim}, compute, "argmax", /*allow_columns=*/true);
  KILN_CHECK(r.len > 0 || r.rows == 0, "argmax: cannot reduce over dimension ", dim, " of size 0 in ",
             shape_str(x.shape()));
  Tensor indices = extremum_rows<true>(r, compute, "argmax").second;
  Shape out = r.out_shape(keepdim);
  return indices.as_strided(out, contiguous_strides(out), 0);
}

Tensor amax(const Tensor& x, const Dims& dims, bool keepdim) {
  DType compute = extremum_compute_dtype(x, "amax");
  Rows r = to_rows(x, dims, compute, "amax", /*allow_columns=*/true);
  KILN_CHECK(r.len > 0 || r.rows == 0, "amax: cannot reduce over an empty dimension of ", shape_str(x.shape()));
  auto [values, indices] = extremum_rows<true>(r, compute, "amax");
  Tensor out = to_dtype_raw(values, x.dtype());
  const Shape& shape = r.out_shape(keepdim);
  out = out.as_strided(shape, contiguous_strides(shape), out.offset());
  if (!any_requires_grad({x})) return out;
  return record("amax", {x}, out, [r_ = layout_only(r), idx_ = SavedTensor(indices, "amax")](
                                      const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{pick_backward(g, idx_.get(), *r_)};
  });
}

// ---------------------------------------------------------------- logsumexp

namespace {
struct LsePartial {
  double max;  // of the chunk
  double sum;  // of exp(x - max)
};

constexpr int64_t kBlock = 1024;  // f32 scratch block for the per-ISA kernels (8 KiB on the stack)

template <typename T>
LsePartial lse_chunk(const T* x, int64_t n, int64_t) {
  if (n == 0) return {-std::numeric_limits<double>::infinity(), 0.0};
  T mt = scan_extremum<true>(x, n).value;
  double m = static_cast<double>(mt);
  if (!std::isfinite(m)) return {m, 1.0};  // all -inf, some +inf, or a NaN: the result is m
  if constexpr (std::is_same_v<T, float>) {
    // Short rows (class scores): inline exp, no kernel calls per row.
    if (n < 64) return {m, lane_sum(x, n, [mt](float v) { return static_cast<double>(cpu::vm_exp(v - mt)); })};
    // Long rows: exp(x - max) block by block with the vectorised f32 kernels; fixed-order f64 sums.
    const cpu::FloatKernels& k = cpu::float_kernels();
    float shifted[kBlock], e[kBlock];
    double sum = 0.0;
    for (int64_t b = 0; b < n; b += kBlock) {
      int64_t len = std::min(kBlock, n - b);
      k.binary(cpu::BinaryOp::sub, shifted, x + b, 1, &mt, 0, len);
      k.unary(cpu::UnaryOp::exp, e, shifted, len);
      sum += k.sum(e, len);
    }
    return {m, sum};
  } else {
    return {m, lane_sum(x, n, [m](double v) { return std::exp(v - m); })};
  }
}

LsePartial lse_combine(LsePartial a, LsePartial b) {
  if (std::isnan(a.max) || std::isnan(b.max)) return {std::nan(""), 1.0};
  double m = std::max(a.max, b.max);
  if (!std::isfinite(m)) return {m, 1.0};
  return {m, a.sum * std::exp(a.max - m) + b.sum * std::exp(b.max - m)};
}
}  // namespace

Tensor logsumexp(const Tensor& x, const Dims& dims, bool keepdim) {
  KILN_CHECK(x.defined(), "logsumexp: input is undefined");
  KILN_CHECK_TYPE(is_floating(x.dtype()), "logsumexp: expected a floating-point tensor, got ", dtype_name(x.dtype()));
  DType compute = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Rows r = to_rows(x, dims, compute, "logsumexp");
  Tensor out = Tensor::empty(r.kept_shape, compute);
  if (r.rows > 0) {
    dispatch_float(compute, "logsumexp", [&]<typename T>() {
      T* po = out.data<T>();
      reduce_rows<LsePartial>(r.data.data<T>(), r.rows, r.len, lse_chunk<T>, lse_combine,
                              [po](int64_t row, LsePartial p) {
                                po[row] = static_cast<T>(std::isfinite(p.max) ? p.max + std::log(p.sum) : p.max);
                              });
    });
  }
  Tensor kept = out;
  const Shape& shape = r.out_shape(keepdim);
  out = out.as_strided(shape, contiguous_strides(shape), 0);
  if (!any_requires_grad({x})) return out;
  // d/dx logsumexp(x) = softmax(x) = exp(x - logsumexp(x))
  return record("logsumexp", {x}, out, [x_ = SavedTensor(x, "logsumexp"), y_ = SavedTensor(kept, "logsumexp"),
                                        kept_shape = r.kept_shape](const Tensor& g, const std::vector<bool>&) {
    Tensor p = exp(sub(x_.get(), y_.get()));
    return std::vector<Tensor>{mul(p, reshape(g, kept_shape))};
  });
}

// ---------------------------------------------------------------- var

namespace {
struct VarPartial {
  double n, mean, m2;  // count, mean and sum of squared deviations (Chan et al.)
};

template <typename T>
VarPartial var_chunk(const T* x, int64_t n, int64_t) {
  if (n == 0) return {0.0, 0.0, 0.0};
  double count = static_cast<double>(n);
  if constexpr (std::is_same_v<T, float>) {
    // Two passes with the vectorised f32 kernels: the mean (f64 sum), then the squared deviations
    // from the mean rounded to f32, corrected back to the exact mean:
    // sum (x - mu)^2 = sum (x - mu_f)^2 - n (mu - mu_f)^2.
    const cpu::FloatKernels& k = cpu::float_kernels();
    double mean = k.sum(x, n) / count;
    float mean_f = static_cast<float>(mean);
    float d[kBlock], d2[kBlock];
    double ss = 0.0;
    for (int64_t b = 0; b < n; b += kBlock) {
      int64_t len = std::min(kBlock, n - b);
      k.binary(cpu::BinaryOp::sub, d, x + b, 1, &mean_f, 0, len);
      k.binary(cpu::BinaryOp::mul, d2, d, 1, d, 1, len);
      ss += k.sum(d2, len);
    }
    double shift = mean - static_cast<double>(mean_f);
    return {count, mean, std::max(0.0, ss - count * shift * shift)};
  } else {
    double mean = lane_sum(x, n, [](T v) { return static_cast<double>(v); }) / count;
    double m2 = lane_sum(x, n, [mean](T v) {
      double dv = static_cast<double>(v) - mean;
      return dv * dv;
    });
    return {count, mean, m2};
  }
}

VarPartial var_combine(VarPartial a, VarPartial b) {
  if (b.n == 0) return a;
  if (a.n == 0) return b;
  double n = a.n + b.n, delta = b.mean - a.mean;
  return {n, a.mean + delta * (b.n / n), a.m2 + b.m2 + delta * delta * (a.n * b.n / n)};
}
}  // namespace

Tensor var(const Tensor& x, const Dims& dims, bool unbiased, bool keepdim) {
  KILN_CHECK(x.defined(), "var: input is undefined");
  KILN_CHECK_TYPE(is_floating(x.dtype()), "var: expected a floating-point tensor, got ", dtype_name(x.dtype()));
  DType compute = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Rows r = to_rows(x, dims, compute, "var");
  double correction = unbiased ? 1.0 : 0.0;
  Tensor out = Tensor::empty(r.kept_shape, compute);
  if (r.rows > 0) {
    dispatch_float(compute, "var", [&]<typename T>() {
      T* po = out.data<T>();
      // n - correction <= 0 gives NaN (0/0) or inf, as in PyTorch.
      reduce_rows<VarPartial>(r.data.data<T>(), r.rows, r.len, var_chunk<T>, var_combine,
                              [po, correction](int64_t row, VarPartial p) {
                                po[row] = static_cast<T>(p.n == 0 ? std::nan("") : p.m2 / (p.n - correction));
                              });
    });
  }
  const Shape& shape = r.out_shape(keepdim);
  out = out.as_strided(shape, contiguous_strides(shape), 0);
  if (!any_requires_grad({x})) return out;
  // d var / dx_i = 2 (x_i - mean) / (n - correction)
  double scale = 2.0 / (static_cast<double>(r.len) - correction);
  return record("var", {x}, out, [x_ = SavedTensor(x, "var"), dims, scale, kept_shape = r.kept_shape](
                                     const Tensor& g, const std::vector<bool>&) {
    const Tensor& x = x_.get();
    Tensor centered = sub(x, mean(x, x.dim() == 0 ? Dims{} : dims, /*keepdim=*/true));
    return std::vector<Tensor>{mul(centered, mul(reshape(g, kept_shape), scale))};
  });
}

}  // namespace kiln::ops
