// 2-d pooling over the last two dims of (N, C, H, W) or (C, H, W): max (with argmax indices kept
// for backward, and a fast path for the common 2x2 stride-2 window), average (padding counted in
// the divisor) and adaptive average. Threads over (n, c) planes; each plane is owned by one thread.
// no-trapping-math lets GCC turn the max-pool compares into vector selects (NaNs still propagate).
#pragma GCC optimize("no-trapping-math")

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/autograd_record.h"
#include "kiln/ops/nn_ops.h"
#include "kiln/ops/trace.h"

namespace kiln::ops {

namespace {

struct PoolPlan {
  int64_t planes, H, W, OH, OW;
  int64_t kh, kw, sh, sw, ph, pw;
  Shape out_shape;
};

PoolPlan plan_pool(const char* op, const Tensor& x, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                   std::array<int64_t, 2> pad) {
  KILN_CHECK(x.dim() == 3 || x.dim() == 4, op, ": expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got ",
             shape_str(x.shape()));
  KILN_CHECK_TYPE(x.dtype() == DType::f32 || x.dtype() == DType::f64, op, ": expected f32 or f64, got ",
                  dtype_name(x.dtype()));
  if (s[0] == 0 && s[1] == 0) s = k;
  KILN_CHECK(k[0] >= 1 && k[1] >= 1 && s[0] >= 1 && s[1] >= 1, op, ": kernel and stride must be positive, got kernel [",
             k[0], ", ", k[1], "], stride [", s[0], ", ", s[1], "]");
  KILN_CHECK(pad[0] >= 0 && pad[1] >= 0 && 2 * pad[0] <= k[0] && 2 * pad[1] <= k[1], op,
             ": padding must be between 0 and half the kernel, got padding [", pad[0], ", ", pad[1], "] for kernel [",
             k[0], ", ", k[1], "]");
  PoolPlan p;
  p.H = x.shape()[x.dim() - 2], p.W = x.shape()[x.dim() - 1];
  p.planes = p.H * p.W == 0 ? 0 : x.numel() / (p.H * p.W);
  p.kh = k[0], p.kw = k[1], p.sh = s[0], p.sw = s[1], p.ph = pad[0], p.pw = pad[1];
  KILN_CHECK(p.H + 2 * p.ph >= p.kh && p.W + 2 * p.pw >= p.kw, op, ": kernel [", k[0], ", ", k[1],
             "] is larger than the padded input ", shape_str(x.shape()));
  p.OH = (p.H + 2 * p.ph - p.kh) / p.sh + 1;
  p.OW = (p.W + 2 * p.pw - p.kw) / p.sw + 1;
  p.out_shape = x.shape();
  p.out_shape[x.dim() - 2] = p.OH;
  p.out_shape[x.dim() - 1] = p.OW;
  return p;
}

inline int64_t plane_grain(int64_t work_per_plane) {
  return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, work_per_plane));
}

// ---- max ----

// The 2x2 stride-2 window (every CNN's pooling): branch-free selects over the four taps, so the
// loops vectorise. The index kept for backward is the tap (0..3: r0[2j], r0[2j+1], r1[2j],
// r1[2j+1]) instead of a flat position. NaN wins, as in PyTorch.
inline bool is_2x2(const PoolPlan& p) {
  return p.kh == 2 && p.kw == 2 && p.sh == 2 && p.sw == 2 && p.ph == 0 && p.pw == 0;
}

template <typename T>
void max_2x2_row(const T* __restrict r0, const T* __restrict r1, T* __restrict o, int32_t* __restrict id,
                 int64_t ow_count) {
  for (int64_t j = 0; j < ow_count; ++j) {
    const T a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
    T m = a;
    int32_t k = 0;
    bool t = b > m || b != b;
    m = t ? b : m, k = t ? 1 : k;
    t = c > m || c != c;
    m = t ? c : m, k = t ? 2 : k;
    t = d > m || d != d;
    m = t ? d : m, k = t ? 3 : k;
    o[j] = m;
    id[j] = k;
  }
}

// The same without the winning taps (inference: no backward will ask). Branch-free selects that
// GCC vectorises; NaN still propagates (a NaN tap wins, as above).
template <typename T>
void max_2x2_row_values(const T* __restrict r0, const T* __restrict r1, T* __restrict o, int64_t ow_count) {
  for (int64_t j = 0; j < ow_count; ++j) {
    const T a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
    T m = a;
    m = (b > m || b != b) ? b : m;
    m = (c > m || c != c) ? c : m;
    m = (d > m || d != d) ? d : m;
    o[j] = m;
  }
}

// Routes g[j] to its window's winning tap and writes 0 to the other three. The select is done on
// the bit patterns (v & all-ones or v & 0): GCC compiles `k == t ? v : 0` to branches here, and
// multiplying by (k == t) would turn an inf gradient into NaNs at the losing taps.
template <typename T>
void max_2x2_row_backward(const T* __restrict g, const int32_t* __restrict id, T* __restrict r0, T* __restrict r1,
                          int64_t ow_count) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  for (int64_t j = 0; j < ow_count; ++j) {
    const Bits v = std::bit_cast<Bits>(g[j]);
    const Bits k = static_cast<Bits>(id[j]);
    r0[2 * j] = std::bit_cast<T>(v & (Bits(0) - Bits(k == 0)));
    r0[2 * j + 1] = std::bit_cast<T>(v & (Bits(0) - Bits(k == 1)));
    r1[2 * j] = std::bit_cast<T>(v & (Bits(0) - Bits(k == 2)));
    r1[2 * j + 1] = std::bit_cast<T>(v & (Bits(0) - Bits(k == 3)));
  }
}

template <typename T>
void max_pool_forward(const PoolPlan& p, const T* x, T* out, int32_t* idx) {
  // idx null: no indices wanted (no gradient will be taken).
  parallel_for(0, p.planes, plane_grain(p.H * p.W), [&](int64_t lo, int64_t hi) {
    for (int64_t pl = lo; pl < hi; ++pl) {
      const T* src = x + pl * p.H * p.W;
      T* o = out + pl * p.OH * p.OW;
      int32_t* id = idx ? idx + pl * p.OH * p.OW : nullptr;
      if (is_2x2(p) && !id) {
        for (int64_t oh = 0; oh < p.OH; ++oh)
          max_2x2_row_values(src + 2 * oh * p.W, src + (2 * oh + 1) * p.W, o + oh * p.OW, p.OW);
        continue;
      }
      if (is_2x2(p)) {
        for (int64_t oh = 0; oh < p.OH; ++oh)
          max_2x2_row(src + 2 * oh * p.W, src + (2 * oh + 1) * p.W, o + oh * p.OW, id + oh * p.OW, p.OW);
        continue;
      }
      for (int64_t oh = 0; oh < p.OH; ++oh) {
        const int64_t h0 = std::max<int64_t>(0, oh * p.sh - p.ph), h1 = std::min(p.H, oh * p.sh - p.ph + p.kh);
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          const int64_t w0 = std::max<int64_t>(0, ow * p.sw - p.pw), w1 = std::min(p.W, ow * p.sw - p.pw + p.kw);
          T m = -std::numeric_limits<T>::infinity();
          int64_t mi = h0 * p.W + w0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) {
              T v = src[h * p.W + w];
              if (v > m || v != v) m = v, mi = h * p.W + w;  // NaN propagates, as in PyTorch
            }
          o[oh * p.OW + ow] = m;
          if (id) id[oh * p.OW + ow] = static_cast<int32_t>(mi);
        }
      }
    }
  });
}

template <typename T>
void max_pool_backward(const PoolPlan& p, const T* g, const int32_t* idx, T* gx) {
  const bool k2 = is_2x2(p);
  parallel_for(0, p.planes, plane_grain(p.H * p.W), [&](int64_t lo, int64_t hi) {
    for (int64_t pl = lo; pl < hi; ++pl) {
      const T* gp = g + pl * p.OH * p.OW;
      const int32_t* id = idx + pl * p.OH * p.OW;
      T* d = gx + pl * p.H * p.W;
      if (k2) {
        // Windows tile the plane: write every covered element once instead of zero-fill + scatter.
        for (int64_t oh = 0; oh < p.OH; ++oh)
          max_2x2_row_backward(gp + oh * p.OW, id + oh * p.OW, d + 2 * oh * p.W, d + (2 * oh + 1) * p.W, p.OW);
        if (p.W > 2 * p.OW)
          for (int64_t h = 0; h < 2 * p.OH; ++h) d[h * p.W + p.W - 1] = T(0);
        if (p.H > 2 * p.OH) std::fill(d + (p.H - 1) * p.W, d + p.H * p.W, T(0));
        continue;
      }
      std::fill(d, d + p.H * p.W, T(0));
      for (int64_t i = 0; i < p.OH * p.OW; ++i) d[id[i]] += gp[i];
    }
  });
}

// ---- average ----

template <typename T>
void avg_pool_forward(const PoolPlan& p, const T* x, T* out) {
  const T inv = T(1) / static_cast<T>(p.kh * p.kw);
  parallel_for(0, p.planes, plane_grain(p.H * p.W), [&](int64_t lo, int64_t hi) {
    for (int64_t pl = lo; pl < hi; ++pl) {
      const T* src = x + pl * p.H * p.W;
      T* o = out + pl * p.OH * p.OW;
      for (int64_t oh = 0; oh < p.OH; ++oh) {
        const int64_t h0 = std::max<int64_t>(0, oh * p.sh - p.ph), h1 = std::min(p.H, oh * p.sh - p.ph + p.kh);
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          const int64_t w0 = std::max<int64_t>(0, ow * p.sw - p.pw), w1 = std::min(p.W, ow * p.sw - p.pw + p.kw);
          T s = 0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) s += src[h * p.W + w];
          o[oh * p.OW + ow] = s * inv;
        }
      }
    }
  });
}

template <typename T>
void avg_pool_backward(const PoolPlan& p, const T* g, T* gx) {
  const T inv = T(1) / static_cast<T>(p.kh * p.kw);
  parallel_for(0, p.planes, plane_grain(p.H * p.W), [&](int64_t lo, int64_t hi) {
    for (int64_t pl = lo; pl < hi; ++pl) {
      const T* gp = g + pl * p.OH * p.OW;
      T* d = gx + pl * p.H * p.W;
      std::fill(d, d + p.H * p.W, T(0));
      for (int64_t oh = 0; oh < p.OH; ++oh) {
        const int64_t h0 = std::max<int64_t>(0, oh * p.sh - p.ph), h1 = std::min(p.H, oh * p.sh - p.ph + p.kh);
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          const int64_t w0 = std::max<int64_t>(0, ow * p.sw - p.pw), w1 = std::min(p.W, ow * p.sw - p.pw + p.kw);
          const T v = gp[oh * p.OW + ow] * inv;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) d[h * p.W + w] += v;
        }
      }
    }
  });
}

// ---- adaptive average: window i spans [floor(i*H/OH), ceil((i+1)*H/OH)) ----

inline int64_t adaptive_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
inline int64_t adaptive_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

template <typename T, bool Backward>
void adaptive_avg(const PoolPlan& p, const T* src_all, T* dst_all) {
  parallel_for(0, p.planes, plane_grain(p.H * p.W), [&](int64_t lo, int64_t hi) {
    for (int64_t pl = lo; pl < hi; ++pl) {
      const T* in = src_all + pl * (Backward ? p.OH * p.OW : p.H * p.W);
      T* out = dst_all + pl * (Backward ? p.H * p.W : p.OH * p.OW);
      if (Backward) std::fill(out, out + p.H * p.W, T(0));
      for (int64_t oh = 0; oh < p.OH; ++oh) {
        const int64_t h0 = adaptive_start(oh, p.H, p.OH), h1 = adaptive_end(oh, p.H, p.OH);
        for (int64_t ow = 0; ow < p.OW; ++ow) {
          const int64_t w0 = adaptive_start(ow, p.W, p.OW), w1 = adaptive_end(ow, p.W, p.OW);
          const T inv = T(1) / static_cast<T>((h1 - h0) * (w1 - w0));
          if (Backward) {
            const T v = in[oh * p.OW + ow] * inv;
            for (int64_t h = h0; h < h1; ++h)
              for (int64_t w = w0; w < w1; ++w) out[h * p.W + w] += v;
          } else {
            T s = 0;
            for (int64_t h = h0; h < h1; ++h)
              for (int64_t w = w0; w < w1; ++w) s += in[h * p.W + w];
            out[oh * p.OW + ow] = s * inv;
          }
        }
      }
    }
  });
}

}  // namespace

Tensor max_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                  std::array<int64_t, 2> padding) {
  TracedOp trace_;
  const PoolPlan p = plan_pool("max_pool2d", x, kernel, stride, padding);
  Tensor xc = contiguous_raw(x);
  Tensor out = Tensor::empty(p.out_shape, x.dtype());
  const bool track = any_requires_grad({x});
  Tensor idx = track ? Tensor::empty(p.out_shape, DType::i32) : Tensor();
  dispatch_float(x.dtype(), "max_pool2d", [&]<typename T>() {
    max_pool_forward<T>(p, xc.data<T>(), out.data<T>(), track ? idx.data<int32_t>() : nullptr);
  });
  return traced(
      trace_, "max_pool2d", {x},
      record("max_pool2d", {x}, out,
             [p, idx, in_shape = x.shape()](const Tensor& g, const std::vector<bool>&) {
               Tensor gc = contiguous_raw(g);
               Tensor gx = Tensor::empty(in_shape, g.dtype());
               dispatch_float(g.dtype(), "max_pool2d backward", [&]<typename T>() {
                 max_pool_backward<T>(p, gc.data<T>(), idx.data<int32_t>(), gx.data<T>());
               });
               return std::vector<Tensor>{gx};
             }),
      {{"kernel_shape", std::vector<int64_t>{kernel[0], kernel[1]}},
       {"strides", std::vector<int64_t>{stride[0] ? stride[0] : kernel[0], stride[1] ? stride[1] : kernel[1]}},
       {"pads", std::vector<int64_t>{padding[0], padding[1], padding[0], padding[1]}}});
}

Tensor avg_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                  std::array<int64_t, 2> padding) {
  TracedOp trace_;
  const PoolPlan p = plan_pool("avg_pool2d", x, kernel, stride, padding);
  Tensor xc = contiguous_raw(x);
  Tensor out = Tensor::empty(p.out_shape, x.dtype());
  dispatch_float(x.dtype(), "avg_pool2d", [&]<typename T>() { avg_pool_forward<T>(p, xc.data<T>(), out.data<T>()); });
  return traced(
      trace_, "avg_pool2d", {x},
      record("avg_pool2d", {x}, out,
             [p, in_shape = x.shape()](const Tensor& g, const std::vector<bool>&) {
               Tensor gc = contiguous_raw(g);
               Tensor gx = Tensor::empty(in_shape, g.dtype());
               dispatch_float(g.dtype(), "avg_pool2d backward",
                              [&]<typename T>() { avg_pool_backward<T>(p, gc.data<T>(), gx.data<T>()); });
               return std::vector<Tensor>{gx};
             }),
      {{"kernel_shape", std::vector<int64_t>{kernel[0], kernel[1]}},
       {"strides", std::vector<int64_t>{stride[0] ? stride[0] : kernel[0], stride[1] ? stride[1] : kernel[1]}},
       {"pads", std::vector<int64_t>{padding[0], padding[1], padding[0], padding[1]}},
       {"count_include_pad", int64_t{1}}});
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size) {
  TracedOp trace_;
  KILN_CHECK(output_size[0] >= 1 && output_size[1] >= 1, "adaptive_avg_pool2d: output size must be positive, got [",
             output_size[0], ", ", output_size[1], "]");
  PoolPlan p = plan_pool("adaptive_avg_pool2d", x, {1, 1}, {1, 1}, {0, 0});
  KILN_CHECK(p.H >= 1 && p.W >= 1, "adaptive_avg_pool2d: empty spatial dims in ", shape_str(x.shape()));
  p.OH = output_size[0], p.OW = output_size[1];
  p.out_shape[x.dim() - 2] = p.OH;
  p.out_shape[x.dim() - 1] = p.OW;
  Tensor xc = contiguous_raw(x);
  Tensor out = Tensor::empty(p.out_shape, x.dtype());
  dispatch_float(x.dtype(), "adaptive_avg_pool2d",
                 [&]<typename T>() { adaptive_avg<T, false>(p, xc.data<T>(), out.data<T>()); });
  return traced(trace_, "adaptive_avg_pool2d", {x},
                           record("adaptive_avg_pool2d", {x}, out,
                                  [p, in_shape = x.shape()](const Tensor& g, const std::vector<bool>&) {
                                    Tensor gc = contiguous_raw(g);
                                    Tensor gx = Tensor::empty(in_shape, g.dtype());
                                    dispatch_float(g.dtype(), "adaptive_avg_pool2d backward", [&]<typename T>() {
                                      adaptive_avg<T, true>(p, gc.data<T>(), gx.data<T>());
                                    });
                                    return std::vector<Tensor>{gx};
                                  }),
                           {{"output_size", std::vector<int64_t>{output_size[0], output_size[1]}}});
}

}  // namespace kiln::ops
