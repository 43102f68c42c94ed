// Structural ops of inference_extra.h: trilu, prod, hardmax, one_hot, eye_like and numel.
// Forward only. Each validates at entry, then runs a plain loop over a contiguous copy (the
// loops are short; prod and hardmax thread over their output rows).
#include "kiln/ops/inference_extra.h"

#include <algorithm>
#include <type_traits>

#include "kiln/core/thread_pool.h"

namespace kiln::ops {

namespace {

int64_t prod_of(const Shape& s, size_t lo, size_t hi) {
  int64_t n = 1;
  for (size_t d = lo; d < hi; ++d) n *= s[d];
  return n;
}

constexpr int64_t kRowGrain = 1 << 12;  // output rows per task: enough work to pay for a task

}  // namespace

// ---------------------------------------------------------------- trilu

Tensor trilu(const Tensor& x, int64_t k, bool upper) {
  KILN_CHECK(x.dim() >= 2, "trilu: input must have at least 2 dims (..., N, M), got ", shape_str(x.shape()));
  Tensor out = clone_raw(x);
  const int64_t n = x.size(-2), m = x.size(-1), batch = n * m == 0 ? 0 : out.numel() / (n * m);
  dispatch_all(out.dtype(), [&]<typename T>() {
    T* p = static_cast<T*>(out.raw_data());
    const T zero = from_double<T>(0.0);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < m; ++j) {
          bool keep = upper ? j - i >= k : j - i <= k;
          if (!keep) p[(b * n + i) * m + j] = zero;
        }
  });
  return out;
}

// ---------------------------------------------------------------- prod

Tensor prod(const Tensor& x, const Dims& dims, bool keepdim) {
  DType in = x.dtype();
  KILN_CHECK_TYPE(in != DType::b8, "prod: not defined for bool tensors");
  const int64_t rank = x.dim();
  std::vector<bool> reduced(static_cast<size_t>(rank), dims.empty());
  for (int64_t d : dims) {
    int64_t a = d < 0 ? d + rank : d;
    KILN_CHECK_INDEX(a >= 0 && a < rank, "prod: dim ", d, " is out of range for input ", shape_str(x.shape()));
    KILN_CHECK(!reduced[static_cast<size_t>(a)], "prod: dim ", d, " is repeated in the reduced dims");
    reduced[static_cast<size_t>(a)] = true;
  }
  DType dt = (in == DType::f16 || in == DType::bf16) ? DType::f32 : in;
  Tensor xc = to_dtype_raw(x, dt);
  // Kept dims first and reduced dims last: each output element is then one contiguous run.
  Shape pshape, out_shape;
  Strides pstrides;
  int64_t run = 1;
  for (int64_t d = 0; d < rank; ++d) {
    if (reduced[static_cast<size_t>(d)]) {
      if (keepdim) out_shape.push_back(1);
      continue;
    }
    pshape.push_back(xc.shape()[d]);
    pstrides.push_back(xc.strides()[d]);
    out_shape.push_back(xc.shape()[d]);
  }
  for (int64_t d = 0; d < rank; ++d)
    if (reduced[static_cast<size_t>(d)]) {
      pshape.push_back(xc.shape()[d]);
      pstrides.push_back(xc.strides()[d]);
      run *= xc.shape()[d];
    }
  Tensor xp = contiguous_raw(xc.as_strided(pshape, pstrides, xc.offset()));
  Tensor out = Tensor::empty(out_shape, dt);
  dispatch_numeric(dt, "prod", [&]<typename T>() {
    const T* px = xp.data<T>();
    T* po = out.data<T>();
    parallel_for(0, out.numel(), std::max<int64_t>(1, kRowGrain / std::max<int64_t>(run, 1)),
                 [&](int64_t lo, int64_t hi) {
                   for (int64_t i = lo; i < hi; ++i) {
                     const T* r = px + i * run;
                     if constexpr (std::is_integral_v<T>) {
                       uint64_t acc = 1;  // unsigned: overflow wraps (as in NumPy) instead of being UB
                       for (int64_t j = 0; j < run; ++j) acc *= static_cast<uint64_t>(r[j]);
                       po[i] = static_cast<T>(acc);
                     } else {
                       T acc = T(1);
                       for (int64_t j = 0; j < run; ++j) acc *= r[j];
                       po[i] = acc;
                     }
                   }
                 });
  });
  return dt == in ? out : to_dtype_raw(out, in);
}

// ---------------------------------------------------------------- hardmax

Tensor hardmax(const Tensor& x, int64_t axis, bool coerce_2d) {
  const int64_t rank = x.dim();
  KILN_CHECK(rank >= 1, "hardmax: input must have at least 1 dim, got a scalar");
  int64_t a = axis < 0 ? axis + rank : axis;
  KILN_CHECK_INDEX(a >= 0 && a < rank, "hardmax: axis ", axis, " is out of range for input ", shape_str(x.shape()));
  DType in = x.dtype();
  KILN_CHECK_TYPE(is_floating(in), "hardmax: input must be a float tensor, got ", dtype_name(in));
  DType dt = in == DType::f64 ? DType::f64 : DType::f32;
  Tensor xc = contiguous_raw(to_dtype_raw(x, dt));
  const Shape& s = x.shape();
  const size_t ua = static_cast<size_t>(a);
  // (outer, n, inner): the max is taken over n, for each (outer, inner) pair.
  const int64_t outer = prod_of(s, 0, ua);
  const int64_t n = coerce_2d ? prod_of(s, ua, s.size()) : s[ua];
  const int64_t inner = coerce_2d ? 1 : prod_of(s, ua + 1, s.size());
  Tensor out = Tensor::zeros(s, dt);
  if (n == 0) return dt == in ? out : to_dtype_raw(out, in);
  dispatch_float(dt, "hardmax", [&]<typename T>() {
    const T* px = xc.data<T>();
    T* po = out.data<T>();
    parallel_for(0, outer * inner, std::max<int64_t>(1, kRowGrain / n), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const int64_t base = (r / inner) * n * inner + r % inner;
        int64_t best = 0;
        for (int64_t j = 1; j < n; ++j)
          if (px[base + j * inner] > px[base + best * inner]) best = j;  // strict: the first max wins
        po[base + best * inner] = T(1);
      }
    });
  });
  return dt == in ? out : to_dtype_raw(out, in);
}

// ---------------------------------------------------------------- one_hot

Tensor one_hot(const Tensor& indices, int64_t depth, const Tensor& values, int64_t axis) {
  KILN_CHECK(depth >= 0, "one_hot: depth must be non-negative, got ", depth);
  KILN_CHECK(values.numel() == 2, "one_hot: values must hold two elements [off_value, on_value], got ",
             shape_str(values.shape()));
  KILN_CHECK_TYPE(indices.dtype() != DType::b8, "one_hot: indices must be numeric, got bool");
  const int64_t rank = indices.dim();
  int64_t a = axis < 0 ? axis + rank + 1 : axis;
  KILN_CHECK_INDEX(a >= 0 && a <= rank, "one_hot: axis ", axis, " is out of range for indices ",
                   shape_str(indices.shape()), " (allowed: [", -rank - 1, ", ", rank, "])");
  // Float indices are truncated to integers first, as ONNX casts them to int64.
  std::vector<int64_t> idx = indices.to_vector<int64_t>();
  Shape out_shape = indices.shape();
  out_shape.insert(out_shape.begin() + a, depth);
  const int64_t inner = prod_of(indices.shape(), static_cast<size_t>(a), indices.shape().size());
  const int64_t outer = prod_of(indices.shape(), 0, static_cast<size_t>(a));
  Tensor vc = contiguous_raw(values);
  Tensor out = Tensor::empty(out_shape, values.dtype());
  dispatch_all(values.dtype(), [&]<typename T>() {
    const T* pv = static_cast<const T*>(vc.raw_data());
    const T off = pv[0], on = pv[1];
    T* po = static_cast<T*>(out.raw_data());
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t d = 0; d < depth; ++d)
        for (int64_t i = 0; i < inner; ++i) {
          int64_t v = idx[static_cast<size_t>(o * inner + i)];
          if (v < 0) v += depth;
          po[(o * depth + d) * inner + i] = v == d ? on : off;
        }
  });
  return out;
}

// ---------------------------------------------------------------- eye_like, numel

Tensor eye_like(const Tensor& x, int64_t k, std::optional<DType> dtype) {
  KILN_CHECK(x.dim() == 2, "eye_like: input must be 2-d, got ", shape_str(x.shape()));
  DType dt = dtype.value_or(x.dtype());
  Tensor out = Tensor::zeros(x.shape(), dt);
  const int64_t rows = x.size(0), cols = x.size(1);
  dispatch_all(dt, [&]<typename T>() {
    T* p = static_cast<T*>(out.raw_data());
    for (int64_t i = 0; i < rows; ++i) {
      int64_t j = i + k;
      if (j >= 0 && j < cols) p[i * cols + j] = from_double<T>(1.0);
    }
  });
  return out;
}

Tensor numel(const Tensor& x) { return Tensor::from_vector<int64_t>({x.numel()}, Shape{}); }

}  // namespace kiln::ops
