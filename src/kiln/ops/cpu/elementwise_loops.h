// Drivers that run an elementwise op over broadcast, strided operands: they merge dims, split the
// work across the pool and hand contiguous runs to the per-ISA f32 kernels; f64 and integer
// dtypes go through the generic template loops here (which are also the reference for f32).
#pragma once

#include <functional>

#include "kiln/core/strided_loop.h"
#include "kiln/core/tensor.h"
#include "kiln/core/thread_pool.h"

namespace kiln::ops::cpu {

constexpr int64_t kElementwiseGrain = 1 << 15;

// Strides of `t` seen as broadcast to `shape` (0 along broadcast dims).
Strides broadcast_strides(const Tensor& t, const Shape& shape);

// out[...] = f(a[...], b[...]) for any element types; out already has the broadcast shape.
template <typename O, typename A, typename B, typename F>
void binary_generic(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  StridedLayout<3> layout(out.shape(), {out.strides(), broadcast_strides(a, out.shape()),
                                        broadcast_strides(b, out.shape())});
  O* po = static_cast<O*>(out.raw_data());
  const A* pa = static_cast<const A*>(a.raw_data());
  const B* pb = static_cast<const B*>(b.raw_data());
  parallel_for(0, out.numel(), kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    layout.for_each_run(lo, hi, [&](const auto& off, const auto& st, int64_t n) {
      O* o = po + off[0];
      const A* x = pa + off[1];
      const B* y = pb + off[2];
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = f(x[i * st[1]], y[i * st[2]]);
    });
  });
}

// out[...] = f(x[...]) with out and x of the same shape.
template <typename O, typename X, typename F>
void unary_generic(const Tensor& out, const Tensor& x, F f) {
  StridedLayout<2> layout(out.shape(), {out.strides(), x.strides()});
  O* po = static_cast<O*>(out.raw_data());
  const X* px = static_cast<const X*>(x.raw_data());
  parallel_for(0, out.numel(), kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    layout.for_each_run(lo, hi, [&](const auto& off, const auto& st, int64_t n) {
      O* o = po + off[0];
      const X* v = px + off[1];
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = f(v[i * st[1]]);
    });
  });
}

}  // namespace kiln::ops::cpu
