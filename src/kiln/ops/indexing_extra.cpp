// scatter_elements, scatter_nd and gather_nd (indexing_extra.h), forward only, every dtype.
// Scatters stay deterministic with duplicate indices: threads split work that can never touch the
// same output element (positions outside the axis; columns of the slice), and each thread applies
// the updates that may collide in row-major order.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kiln/core/strided_loop.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/indexing_extra.h"

namespace kiln::ops {

namespace {

constexpr int64_t kGrain = 1 << 14;  // elements per task: below this, threads cost more than they save

template <typename T>
constexpr bool kIsHalf = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

// `old` combined with `upd` under reduction R; f16/bf16 combine in f32 (via double), bool as logic.
template <ScatterReduction R, typename T>
inline T combine(T old, T upd) {
  if constexpr (R == ScatterReduction::none) {
    (void)old;
    return upd;
  } else if constexpr (std::is_same_v<T, bool>) {
    return (R == ScatterReduction::add || R == ScatterReduction::max) ? (old || upd) : (old && upd);
  } else if constexpr (kIsHalf<T>) {
    return from_double<T>(static_cast<double>(combine<R>(static_cast<float>(to_double(old)),
                                                         static_cast<float>(to_double(upd)))));
  } else if constexpr (R == ScatterReduction::add) {
    return static_cast<T>(old + upd);
  } else if constexpr (R == ScatterReduction::mul) {
    return static_cast<T>(old * upd);
  } else if constexpr (R == ScatterReduction::max) {
    return std::max(old, upd);
  } else {
    return std::min(old, upd);
  }
}

// Calls fn.template operator()<R>() for the runtime reduction (the kernels' inner loops are then
// free of a per-element switch).
template <typename Fn>
void dispatch_reduction(ScatterReduction r, Fn&& fn) {
  switch (r) {
    case ScatterReduction::none: return fn.template operator()<ScatterReduction::none>();
    case ScatterReduction::add: return fn.template operator()<ScatterReduction::add>();
    case ScatterReduction::mul: return fn.template operator()<ScatterReduction::mul>();
    case ScatterReduction::max: return fn.template operator()<ScatterReduction::max>();
    case ScatterReduction::min: return fn.template operator()<ScatterReduction::min>();
  }
}

void check_index_dtype(const Tensor& indices, const char* op) {
  KILN_CHECK(indices.defined(), op, ": indices are undefined");
  KILN_CHECK_TYPE(indices.dtype() == DType::i64 || indices.dtype() == DType::i32, op,
                  ": indices must be an i64 or i32 tensor, got ", dtype_name(indices.dtype()));
}

// The indices in row-major order as i64, each checked against [-size, size) of the dim it indexes
// (dim_of(position) -> (dim, size)) and made non-negative.
template <typename DimOf>
std::vector<int64_t> normalized_indices(const Tensor& indices, const char* op, DimOf dim_of) {
  std::vector<int64_t> idx = indices.to_vector<int64_t>();
  for (size_t i = 0; i < idx.size(); ++i) {
    auto [dim, size] = dim_of(static_cast<int64_t>(i));
    int64_t v = idx[i];
    KILN_CHECK_INDEX(v >= -size && v < size, op, ": index ", v, " is out of range for dimension ", dim,
                     " with size ", size);
    idx[i] = v < 0 ? v + size : v;
  }
  return idx;
}

void check_updates(const Tensor& data, const Tensor& updates, const Shape& want, const char* op) {
  KILN_CHECK(updates.defined(), op, ": updates are undefined");
  KILN_CHECK_TYPE(updates.dtype() == data.dtype(), op, ": updates must have data's dtype ", dtype_name(data.dtype()),
                  ", got ", dtype_name(updates.dtype()));
  KILN_CHECK(updates.shape() == want, op, ": updates must have shape ", shape_str(want), ", got ",
             shape_str(updates.shape()));
}

}  // namespace

ScatterReduction scatter_reduction_from_name(std::string_view name) {
  if (name == "none") return ScatterReduction::none;
  if (name == "add") return ScatterReduction::add;
  if (name == "mul") return ScatterReduction::mul;
  if (name == "max") return ScatterReduction::max;
  if (name == "min") return ScatterReduction::min;
  throw ValueError(detail::concat("scatter: unknown reduction '", name, "' (expected none, add, mul, max or min)"));
}

// ---------------------------------------------------------------- scatter_elements

Tensor scatter_elements(const Tensor& data, const Tensor& indices, const Tensor& updates, int64_t axis,
                        ScatterReduction reduction) {
  const char* op = "scatter_elements";
  check_index_dtype(indices, op);
  KILN_CHECK(data.dim() >= 1 && indices.dim() == data.dim(), op, ": indices ", shape_str(indices.shape()),
             " must have the rank of data ", shape_str(data.shape()), " (at least 1)");
  check_updates(data, updates, indices.shape(), op);
  const int64_t ax = wrap_dim(axis, data.dim(), op);
  for (int64_t d = 0; d < data.dim(); ++d)
    KILN_CHECK(d == ax || indices.shape()[d] <= data.shape()[d], op, ": indices ", shape_str(indices.shape()),
               " are larger than data ", shape_str(data.shape()), " in dimension ", d);
  const int64_t size = data.shape()[ax];
  std::vector<int64_t> idx = normalized_indices(indices, op, [&](int64_t) { return std::pair{ax, size}; });

  Tensor out = clone_raw(data);
  if (indices.numel() == 0) return out;
  Tensor upd = contiguous_raw(updates);
  // Threads split the positions outside `axis` (they never collide); each walks the axis in order.
  Shape positions = indices.shape();
  const int64_t len = positions[ax];
  positions[ax] = 1;
  Strides is = contiguous_strides(indices.shape());
  StridedLayout<3> layout(positions, {out.strides(), is, upd.strides()});
  const int64_t o_ax = out.strides()[ax], i_ax = is[ax], u_ax = upd.strides()[ax];
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(len, 1));
  dispatch_all(data.dtype(), [&]<typename T>() {
    dispatch_reduction(reduction, [&]<ScatterReduction R>() {
      T* po = out.data<T>();
      const T* pu = upd.data<T>();
      const int64_t* pi = idx.data();
      parallel_for(0, numel(positions), grain, [&](int64_t lo, int64_t hi) {
        layout.for_each_run(lo, hi, [&](const auto& off, const auto& st, int64_t n) {
          for (int64_t i = 0; i < n; ++i) {
            T* o = po + off[0] + i * st[0];
            const int64_t* ix = pi + off[1] + i * st[1];
            const T* u = pu + off[2] + i * st[2];
            for (int64_t k = 0; k < len; ++k) {
              T& dst = o[ix[k * i_ax] * o_ax];
              dst = combine<R>(dst, u[k * u_ax]);
            }
          }
        });
      });
    });
  });
  return out;
}

// ---------------------------------------------------------------- scatter_nd

Tensor scatter_nd(const Tensor& data, const Tensor& indices, const Tensor& updates, ScatterReduction reduction) {
  const char* op = "scatter_nd";
  check_index_dtype(indices, op);
  KILN_CHECK(data.dim() >= 1 && indices.dim() >= 1, op, ": data ", shape_str(data.shape()), " and indices ",
             shape_str(indices.shape()), " must both have rank >= 1");
  const int64_t k = indices.shape().back();
  KILN_CHECK(k >= 1 && k <= data.dim(), op, ": the last dim of indices ", shape_str(indices.shape()),
             " must be in [1, ", data.dim(), "] for data ", shape_str(data.shape()));
  Shape want(indices.shape().begin(), indices.shape().end() - 1);
  want.insert(want.end(), data.shape().begin() + k, data.shape().end());
  check_updates(data, updates, want, op);
  std::vector<int64_t> idx =
      normalized_indices(indices, op, [&](int64_t i) { return std::pair{i % k, data.shape()[i % k]}; });

  Tensor out = clone_raw(data);
  const int64_t rows = indices.numel() / k;
  const Strides os = out.strides();
  const int64_t S = numel(Shape(data.shape().begin() + k, data.shape().end()));  // elements per slice
  if (rows == 0 || S == 0) return out;
  std::vector<int64_t> base(static_cast<size_t>(rows), 0);  // each row's slice offset in out
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < k; ++j) base[r] += idx[r * k + j] * os[j];
  Tensor upd = contiguous_raw(updates);
  // Rows may name the same slice, so threads split the slice's columns and walk rows in order.
  dispatch_all(data.dtype(), [&]<typename T>() {
    dispatch_reduction(reduction, [&]<ScatterReduction R>() {
      T* po = out.data<T>();
      const T* pu = upd.data<T>();
      parallel_for(0, S, std::max<int64_t>(1, kGrain / rows), [&](int64_t lo, int64_t hi) {
        for (int64_t r = 0; r < rows; ++r) {
          T* o = po + base[r];
          const T* u = pu + r * S;
          for (int64_t c = lo; c < hi; ++c) o[c] = combine<R>(o[c], u[c]);
        }
      });
    });
  });
  return out;
}

// ---------------------------------------------------------------- gather_nd

Tensor gather_nd(const Tensor& data, const Tensor& indices, int64_t batch_dims) {
  const char* op = "gather_nd";
  KILN_CHECK(data.defined(), op, ": data is undefined");
  check_index_dtype(indices, op);
  const int64_t r = data.dim(), q = indices.dim(), b = batch_dims;
  KILN_CHECK(r >= 1 && q >= 1, op, ": data ", shape_str(data.shape()), " and indices ", shape_str(indices.shape()),
             " must both have rank >= 1");
  KILN_CHECK(b >= 0 && b < std::min(r, q), op, ": batch_dims ", b, " must be in [0, ", std::min(r, q),
             ") for data ", shape_str(data.shape()), " and indices ", shape_str(indices.shape()));
  for (int64_t d = 0; d < b; ++d)
    KILN_CHECK(indices.shape()[d] == data.shape()[d], op, ": the first ", b, " (batch) dims of indices ",
               shape_str(indices.shape()), " and data ", shape_str(data.shape()), " differ");
  const int64_t k = indices.shape().back();
  KILN_CHECK(k >= 1 && k <= r - b, op, ": the last dim of indices ", shape_str(indices.shape()), " must be in [1, ",
             r - b, "] for data ", shape_str(data.shape()), " with batch_dims ", b);
  std::vector<int64_t> idx =
      normalized_indices(indices, op, [&](int64_t i) { return std::pair{b + i % k, data.shape()[b + i % k]}; });

  Shape out_shape(indices.shape().begin(), indices.shape().end() - 1);
  out_shape.insert(out_shape.end(), data.shape().begin() + b + k, data.shape().end());
  Tensor out = Tensor::empty(out_shape, data.dtype());
  if (out.numel() == 0) return out;
  Tensor x = contiguous_raw(data);
  const Strides xs = x.strides();
  const int64_t S = numel(Shape(data.shape().begin() + b + k, data.shape().end()));  // elements per slice
  const int64_t rows = indices.numel() / k;
  const int64_t rows_per_batch = rows / std::max<int64_t>(1, numel(Shape(data.shape().begin(), data.shape().begin() + b)));
  const int64_t batch_stride = b == 0 ? 0 : xs[b - 1];
  const size_t es = element_size(data.dtype());
  const char* px = static_cast<const char*>(x.raw_data());
  char* po = static_cast<char*>(out.raw_data());
  // Each output row is one contiguous slice of data: a byte copy, whatever the dtype.
  parallel_for(0, rows, std::max<int64_t>(1, kGrain / S), [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; ++row) {
      int64_t src = (row / rows_per_batch) * batch_stride;
      for (int64_t j = 0; j < k; ++j) src += idx[row * k + j] * xs[b + j];
      std::memcpy(po + row * S * es, px + src * es, S * es);
    }
  });
  return out;
}

}  // namespace kiln::ops
