// Structural inference ops (inference_ops.h): tile, range, cumsum, shape_of, constant_of_shape.
// Forward only, ONNX semantics.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/elementwise_loops.h"
#include "kiln/ops/inference_ops.h"

namespace kiln::ops {

// ---------------------------------------------------------------- tile

Tensor tile(const Tensor& x, const std::vector<int64_t>& repeats) {
  KILN_CHECK(static_cast<int64_t>(repeats.size()) == x.dim(), "tile: ", repeats.size(),
             " repeats for input ", shape_str(x.shape()), " of rank ", x.dim(), " (one repeat per dim expected)");
  for (int64_t r : repeats)
    KILN_CHECK(r >= 0, "tile: repeats must be non-negative, got ", shape_str(repeats));
  // View x as (r0, d0, r1, d1, ...) with stride 0 along each repeat dim, copy that to a
  // contiguous tensor, and read it back as (r0 * d0, r1 * d1, ...): one threaded strided copy.
  Shape wide, out_shape;
  Strides wide_strides;
  for (int64_t d = 0; d < x.dim(); ++d) {
    wide.push_back(repeats[d]);
    wide.push_back(x.shape()[d]);
    wide_strides.push_back(0);
    wide_strides.push_back(x.strides()[d]);
    out_shape.push_back(repeats[d] * x.shape()[d]);
  }
  Tensor out = Tensor::empty(out_shape, x.dtype());
  if (out.numel() > 0) {
    Tensor dst = out.as_strided(wide, contiguous_strides(wide), 0);
    copy_into(dst, x.as_strided(wide, wide_strides, x.offset()));
  }
  return out;
}

// ---------------------------------------------------------------- range

namespace {
template <typename T>
T first_value(const Tensor& t) {
  return contiguous_raw(t).data<T>()[0];
}
}  // namespace

Tensor range(const Tensor& start, const Tensor& limit, const Tensor& delta) {
  const char* names[] = {"start", "limit", "delta"};
  const Tensor* args[] = {&start, &limit, &delta};
  for (int i = 0; i < 3; ++i)
    KILN_CHECK(args[i]->numel() == 1, "range: ", names[i], " must have one element, got ", args[i]->str());
  KILN_CHECK_TYPE(start.dtype() == limit.dtype() && start.dtype() == delta.dtype(),
                  "range: start, limit and delta must share one dtype, got ", dtype_name(start.dtype()), ", ",
                  dtype_name(limit.dtype()), " and ", dtype_name(delta.dtype()));
  Tensor out;
  dispatch_numeric(start.dtype(), "range", [&]<typename T>() {
    T s = first_value<T>(start), l = first_value<T>(limit), d = first_value<T>(delta);
    KILN_CHECK(d != T(0), "range: delta must not be zero");
    int64_t n = 0;
    if constexpr (std::is_floating_point_v<T>) {
      T count = std::ceil((l - s) / d);
      KILN_CHECK(std::isfinite(count), "range: cannot count the elements from start ", s, " to limit ", l,
                 " by delta ", d);
      n = count > T(0) ? static_cast<int64_t>(count) : 0;
    } else {
      // Exact ceiling division in 64 bits (T may be unsigned: work from the differences' signs).
      int64_t span = static_cast<int64_t>(l) - static_cast<int64_t>(s), step = static_cast<int64_t>(d);
      if ((span > 0 && step > 0) || (span < 0 && step < 0)) {
        int64_t a = span < 0 ? -span : span, b = step < 0 ? -step : step;
        n = (a + b - 1) / b;
      }
    }
    out = Tensor::empty({n}, start.dtype());
    T* p = out.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(s + static_cast<T>(i) * d);
  });
  return out;
}

// ---------------------------------------------------------------- cumsum

Tensor cumsum(const Tensor& x, int64_t axis, bool exclusive, bool reverse) {
  KILN_CHECK(x.dim() >= 1, "cumsum: input must have at least one dimension, got a scalar");
  int64_t ax = wrap_dim(axis, x.dim(), "cumsum");
  DType dt = (x.dtype() == DType::f16 || x.dtype() == DType::bf16) ? DType::f32 : x.dtype();
  Tensor xc = contiguous_raw(to_dtype_raw(x, dt));
  Tensor out = Tensor::empty(x.shape(), dt);
  // (outer, n, inner): each outer slab runs down the axis, adding whole rows of `inner`
  // columns at a time (a vectorisable loop); work splits over slabs and blocks of columns.
  int64_t n = x.shape()[ax], outer = 1, inner = 1;
  for (int64_t d = 0; d < ax; ++d) outer *= x.shape()[d];
  for (int64_t d = ax + 1; d < x.dim(); ++d) inner *= x.shape()[d];
  constexpr int64_t kBlock = 512;
  int64_t blocks = std::max<int64_t>(num_chunks(inner, kBlock), 1);
  dispatch_numeric(dt, "cumsum", [&]<typename T>() {
    if (out.numel() == 0) return;
    const T* px = xc.data<T>();
    T* po = out.data<T>();
    if (inner == 1) {  // scanning the last dim: one running sum per row
      parallel_for(0, outer, std::max<int64_t>(1, cpu::kElementwiseGrain / std::max<int64_t>(n, 1)),
                   [&](int64_t lo, int64_t hi) {
                     for (int64_t o = lo; o < hi; ++o) {
                       const T* xs = px + o * n;
                       T* ys = po + o * n;
                       T acc = T(0);
                       for (int64_t step = 0; step < n; ++step) {
                         int64_t k = reverse ? n - 1 - step : step;
                         T next = static_cast<T>(acc + xs[k]);
                         ys[k] = exclusive ? acc : next;
                         acc = next;
                       }
                     }
                   });
      return;
    }
    int64_t grain = std::max<int64_t>(1, cpu::kElementwiseGrain / std::max<int64_t>(1, n * std::min(inner, kBlock)));
    parallel_for(0, outer * blocks, grain, [&](int64_t lo, int64_t hi) {
      for (int64_t task = lo; task < hi; ++task) {
        int64_t o = task / blocks, c0 = (task % blocks) * kBlock, c1 = std::min(inner, c0 + kBlock);
        const T* xs = px + o * n * inner;
        T* ys = po + o * n * inner;
        for (int64_t step = 0; step < n; ++step) {
          int64_t k = reverse ? n - 1 - step : step;
          int64_t prev = reverse ? k + 1 : k - 1;  // the row summed just before
          T* y = ys + k * inner;
          if (step == 0) {
            for (int64_t c = c0; c < c1; ++c) y[c] = exclusive ? T(0) : xs[k * inner + c];
          } else {
            const T* yp = ys + prev * inner;
            const T* xa = xs + (exclusive ? prev : k) * inner;
            for (int64_t c = c0; c < c1; ++c) y[c] = static_cast<T>(yp[c] + xa[c]);
          }
        }
      }
    });
  });
  return dt == x.dtype() ? out : to_dtype_raw(out, x.dtype());
}

// ---------------------------------------------------------------- shape_of, constant_of_shape

Tensor shape_of(const Tensor& x, int64_t start, std::optional<int64_t> end) {
  int64_t rank = x.dim();
  auto clampdim = [rank](int64_t d) { return std::clamp(d < 0 ? d + rank : d, int64_t{0}, rank); };
  int64_t s = clampdim(start), e = end ? clampdim(*end) : rank;
  int64_t n = std::max<int64_t>(e - s, 0);
  Tensor out = Tensor::empty({n}, DType::i64);
  for (int64_t i = 0; i < n; ++i) out.data<int64_t>()[i] = x.shape()[s + i];
  return out;
}

Tensor constant_of_shape(const Tensor& shape, const Tensor& value) {
  KILN_CHECK_TYPE(is_integral(shape.dtype()), "constant_of_shape: shape must be an integer tensor, got ",
                  shape.str());
  KILN_CHECK(shape.dim() == 1, "constant_of_shape: shape must be a 1-d tensor, got ", shape.str());
  Shape dims = shape.to_vector<int64_t>();
  for (int64_t d : dims)
    KILN_CHECK(d >= 0, "constant_of_shape: dimensions must be non-negative, got ", shape_str(dims));
  if (!value.defined()) return Tensor::zeros(dims, DType::f32);
  KILN_CHECK(value.numel() == 1, "constant_of_shape: value must have exactly one element, got ", value.str());
  Tensor out = Tensor::empty(dims, value.dtype());
  // Broadcast the single element with zero strides: an exact copy for every dtype (no detour
  // through double, which would round large i64 values).
  if (out.numel() > 0) copy_into(out, value.as_strided(dims, Strides(dims.size(), 0), value.offset()));
  return out;
}

}  // namespace kiln::ops
