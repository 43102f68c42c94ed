// im2col / col2im for conv2d (see conv_kernels.h). For each kernel tap (kh, kw) the range of output
// columns whose input column lies inside the image is computed once, so the inner loops are plain
// copies (a memcpy-like run when the stride is 1) with zero fill only at the borders.
#include "kiln/ops/cpu/conv_kernels.h"

#include <algorithm>
#include <cstring>

#include "kiln/core/thread_pool.h"

namespace kiln::ops::cpu {

namespace {

// Output columns [lo, hi) whose input column ow*s + off falls inside [0, W).
inline void valid_cols(int64_t off, int64_t s, int64_t W, int64_t OW, int64_t& lo, int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + s - 1) / s;
  hi = W - 1 - off < 0 ? 0 : (W - 1 - off) / s + 1;
  hi = std::min(hi, OW);
  lo = std::min(lo, hi);
}

inline int64_t plane_grain(const ConvGeom& g) {
  return std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, g.KH * g.KW * g.OH * g.OW));
}

inline int64_t col_row(const ConvGeom& g, int64_t c, int64_t kh, int64_t kw) {
  return (c / g.Cg) * g.group_rows + ((c % g.Cg) * g.KH + kh) * g.KW + kw;
}

// Unit horizontal stride and dilation (the common 3x3 case): walk (kh, oh) outer so each input
// row is read once for all kw taps, and copy whole interior runs (no per-element bounds test).
// dst0 points at the (kh=0, kw=0) row of this plane's column block; rows are ld apart.
template <typename T>
void im2col_unit_stride(const T* __restrict src, T* __restrict dst0, const ConvGeom& g, int64_t ld) {
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    T* rows = dst0 + kh * g.KW * ld;
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const int64_t ih = oh * g.sh - g.ph + kh * g.dh;
      if (ih < 0 || ih >= g.H) {
        for (int64_t kw = 0; kw < g.KW; ++kw) std::fill_n(rows + kw * ld + oh * g.OW, g.OW, T(0));
        continue;
      }
      const T* s = src + ih * g.W;
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        T* d = rows + kw * ld + oh * g.OW;
        // Padded taps: zero the border columns, copy the interior [lo, hi) as one run.
        const int64_t off = kw - g.pw;
        const int64_t lo = std::min(g.OW, std::max<int64_t>(0, -off));
        const int64_t hi = std::max(lo, std::min(g.OW, g.W - off));
        std::fill_n(d, lo, T(0));
        std::memcpy(d + lo, s + lo + off, sizeof(T) * static_cast<size_t>(hi - lo));
        std::fill_n(d + hi, g.OW - hi, T(0));
      }
    }
  }
}

// The adjoint of im2col_unit_stride, accumulating into the (zeroed) plane dst: the destination
// row stays in L1 while the KW tap rows are added into it.
template <typename T>
void col2im_unit_stride(const T* __restrict src0, T* __restrict dst, const ConvGeom& g, int64_t ld) {
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const int64_t ih = oh * g.sh - g.ph + kh * g.dh;
      if (ih < 0 || ih >= g.H) continue;
      T* d = dst + ih * g.W;
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const T* s = src0 + (kh * g.KW + kw) * ld + oh * g.OW;
        const int64_t off = kw - g.pw;
        const int64_t lo = std::max<int64_t>(0, -off), hi = std::min(g.OW, g.W - off);
        for (int64_t ow = lo; ow < hi; ++ow) d[ow + off] += s[ow];
      }
    }
  }
}

}  // namespace

template <typename T>
void im2col(const T* x, T* col, const ConvGeom& g, int64_t nb, int64_t ld) {
  const int64_t P = g.OH * g.OW, HW = g.H * g.W;
  const bool unit = g.sw == 1 && g.dw == 1;
  parallel_for(0, g.C * nb, plane_grain(g), [&](int64_t lo_task, int64_t hi_task) {
    for (int64_t task = lo_task; task < hi_task; ++task) {
      const int64_t c = task / nb, j = task % nb;
      const T* __restrict src = x + (j * g.C + c) * HW;
      if (unit) {
        im2col_unit_stride(src, col + col_row(g, c, 0, 0) * ld + j * P, g, ld);
        continue;
      }
      for (int64_t kh = 0; kh < g.KH; ++kh) {
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          T* __restrict dst = col + col_row(g, c, kh, kw) * ld + j * P;
          const int64_t off = kw * g.dw - g.pw;
          int64_t lo, hi;
          valid_cols(off, g.sw, g.W, g.OW, lo, hi);
          for (int64_t oh = 0; oh < g.OH; ++oh) {
            T* d = dst + oh * g.OW;
            const int64_t ih = oh * g.sh - g.ph + kh * g.dh;
            if (ih < 0 || ih >= g.H) {
              std::fill(d, d + g.OW, T(0));
              continue;
            }
            const T* s = src + ih * g.W + off;
            std::fill(d, d + lo, T(0));
            if (g.sw == 1) {
              for (int64_t ow = lo; ow < hi; ++ow) d[ow] = s[ow];
            } else {
              for (int64_t ow = lo; ow < hi; ++ow) d[ow] = s[ow * g.sw];
            }
            std::fill(d + hi, d + g.OW, T(0));
          }
        }
      }
    }
  });
  const int64_t taps = g.Cg * g.KH * g.KW;
  if (g.group_rows > taps) {
    for (int64_t grp = 0; grp < g.C / g.Cg; ++grp) {
      T* ones = col + (grp * g.group_rows + taps) * ld;
      std::fill(ones, ones + nb * P, T(1));
    }
  }
}

template <typename T>
void col2im(const T* col, T* dx, const ConvGeom& g, int64_t nb, int64_t ld) {
  const int64_t P = g.OH * g.OW, HW = g.H * g.W;
  const bool unit = g.sw == 1 && g.dw == 1;
  parallel_for(0, g.C * nb, plane_grain(g), [&](int64_t lo_task, int64_t hi_task) {
    for (int64_t task = lo_task; task < hi_task; ++task) {
      const int64_t c = task / nb, j = task % nb;
      T* __restrict dst = dx + (j * g.C + c) * HW;
      std::fill(dst, dst + HW, T(0));
      if (unit) {
        col2im_unit_stride(col + col_row(g, c, 0, 0) * ld + j * P, dst, g, ld);
        continue;
      }
      for (int64_t kh = 0; kh < g.KH; ++kh) {
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const T* __restrict src = col + col_row(g, c, kh, kw) * ld + j * P;
          const int64_t off = kw * g.dw - g.pw;
          int64_t lo, hi;
          valid_cols(off, g.sw, g.W, g.OW, lo, hi);
          for (int64_t oh = 0; oh < g.OH; ++oh) {
            const int64_t ih = oh * g.sh - g.ph + kh * g.dh;
            if (ih < 0 || ih >= g.H) continue;
            T* d = dst + ih * g.W + off;
            const T* s = src + oh * g.OW;
            if (g.sw == 1) {
              for (int64_t ow = lo; ow < hi; ++ow) d[ow] += s[ow];
            } else {
              for (int64_t ow = lo; ow < hi; ++ow) d[ow * g.sw] += s[ow];
            }
          }
        }
      }
    }
  });
}

template void im2col<float>(const float*, float*, const ConvGeom&, int64_t, int64_t);
template void im2col<double>(const double*, double*, const ConvGeom&, int64_t, int64_t);
template void col2im<float>(const float*, float*, const ConvGeom&, int64_t, int64_t);
template void col2im<double>(const double*, double*, const ConvGeom&, int64_t, int64_t);

}  // namespace kiln::ops::cpu
