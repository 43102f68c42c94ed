// conv2d's building blocks (see conv_kernels.h): im2col / col2im, the im2col+GEMM driver and the
// direct algorithm's driver. In im2col, for each kernel tap (kh, kw) the range of output columns
// whose input column lies inside the image is computed once, so the inner loops are plain copies
// (a memcpy-like run when the stride is 1) with zero fill only at the borders.
#include "kiln/ops/cpu/conv_kernels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/float_kernels.h"
#include "kiln/ops/cpu/gemm.h"

namespace kiln::ops::cpu {

namespace {

// Output columns [lo, hi) whose input column ow*s + off falls inside [0, W).
inline void valid_cols(int64_t off, int64_t s, int64_t W, int64_t OW, int64_t& lo, int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + s - 1) / s;
  hi = W - 1 - off < 0 ? 0 : (W - 1 - off) / s + 1;
  hi = std::min(hi, OW);
  lo = std::min(lo, hi);
}

// d[i] = s[i*sw] for i in [lo, hi); stride 2 (the downsampling convs) as its own loop, which the
// compiler vectorises with shuffles instead of scalar loads.
template <typename T>
inline void strided_copy(T* __restrict d, const T* __restrict s, int64_t lo, int64_t hi, int64_t sw) {
  if (sw == 2) {
    for (int64_t i = lo; i < hi; ++i) d[i] = s[2 * i];
    return;
  }
  for (int64_t i = lo; i < hi; ++i) d[i] = s[i * sw];
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
              strided_copy(d, s, lo, hi, g.sw);
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

int64_t& conv_keep_columns_limit() {
  static int64_t limit = int64_t{1} << 24;
  return limit;
}

// ---------------------------------------------------------------- im2col + GEMM
//
// The batch is processed in chunks of images whose column matrix (C*KH*KW (+1), chunk*OH*OW)
// stays a few MB; each chunk is then a single GEMM:
//   forward   out[n] (O, P)   = W_aug (O, K+1) @ col[:, n*P:(n+1)*P]   (batched over n, bias fused
//                                                                      through a row of ones)
//   weight    dW_aug (O, K+1) = gout_r (O, nb*P) @ col^T                (K = nb*P: one big GEMM;
//                                                                      the ones row yields db)
//   input     dcol (K, nb*P)  = W^T (K, O) @ gout_r, then col2im
// A first layer (few taps, large images, no input gradient) takes per-image weight GEMMs
// instead, which avoids regrouping its large output gradient. Partials of dW are added in a fixed
// order, so gradients are deterministic.

namespace {

// Column buffer budget per chunk, in elements (4 MB of f32, L3-resident). Smaller chunks measured
// no faster on this machine (also with Kiln's packed GEMM: 1 MB and 256 KB chunks were 10-30%
// slower on resnet_small's stride-2 layer), and larger ones make the GEMMs no more efficient.
constexpr int64_t kColBudget = int64_t{1} << 20;

// Output planes below this many positions take one GEMM per chunk instead of one per image
// (measured 10-20% faster at 2 threads on resnet_small's 7x7 stride-2 layer, no change at 14x14).
constexpr int64_t kSmallPlane = 256;

int64_t col_rows(const ConvShape& s) { return s.Cg() * s.KH * s.KW + (s.bias ? 1 : 0); }

ConvGeom geom_of(const ConvShape& s, int64_t group_rows) {
  return {s.C, s.H, s.W, s.KH, s.KW, s.OH(), s.OW(), s.sh, s.sw, s.ph, s.pw, s.dh, s.dw, s.Cg(), group_rows};
}

int64_t chunk_images(const ConvShape& s, int64_t group_rows) {
  return std::clamp<int64_t>(kColBudget / std::max<int64_t>(1, s.groups * group_rows * s.OH() * s.OW()), 1,
                             std::max<int64_t>(s.N, 1));
}

// Per-thread scratch that only grows, so steady-state training allocates nothing here.
template <typename T>
T* scratch(int slot, int64_t n) {
  thread_local std::vector<T> bufs[4];
  auto& v = bufs[slot];
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

// gout (N, O, P) images [n0, n0+nb) -> gr (O, nb*P): the layout the weight and input GEMMs need.
template <typename T>
void gather_grad_rows(const T* gout, T* gr, int64_t O, int64_t P, int64_t nb) {
  parallel_for(0, O * nb, std::max<int64_t>(1, 8192 / P), [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t o = t / nb, j = t % nb;
      std::memcpy(gr + (o * nb + j) * P, gout + (j * O + o) * P, sizeof(T) * P);
    }
  });
}

}  // namespace

int64_t im2col_saved_elems(const ConvShape& s) { return s.groups * col_rows(s) * s.N * s.OH() * s.OW(); }

template <typename T>
void im2col_conv_forward(const ConvShape& s, const T* x, const T* w, const T* b, T* out, T* col_keep, bool relu) {
  const int64_t taps = s.Cg() * s.KH * s.KW, Kb = col_rows(s), P = s.OH() * s.OW(), CHW = s.C * s.H * s.W;
  const int64_t Og = s.Og();
  const T* wa = w;
  std::vector<T> waug;
  if (b) {  // W_aug (O, taps + 1): the bias is the weight of the ones row.
    waug.resize(static_cast<size_t>(s.O * Kb));
    for (int64_t o = 0; o < s.O; ++o) {
      std::copy(w + o * taps, w + (o + 1) * taps, waug.data() + o * Kb);
      waug[o * Kb + taps] = b[o];
    }
    wa = waug.data();
  }
  const ConvGeom geom = geom_of(s, Kb);
  const int64_t nbmax = chunk_images(s, Kb);
  T* col_scratch = col_keep ? nullptr : scratch<T>(0, s.groups * Kb * nbmax * P);
  for (int64_t n0 = 0; n0 < s.N; n0 += nbmax) {
    const int64_t nb = std::min(nbmax, s.N - n0), ld = nb * P;
    T* col = col_keep ? col_keep + n0 * s.groups * Kb * P : col_scratch;
    im2col(x + n0 * CHW, col, geom, nb, ld);
    if (s.groups == 1 && P < kSmallPlane) {
      // Small output planes (strided layers): one GEMM over the chunk's nb*P columns, then
      // regroup (O, nb*P) -> (nb, O, P); a batch of (O, P, K) GEMMs would be too narrow.
      T* tmp = scratch<T>(1, s.O * ld);
      gemm<T>(1, s.O, ld, Kb, {wa, 0, Kb, 1}, {col, 0, ld, 1}, tmp);
      T* o0 = out + n0 * s.O * P;
      parallel_for(0, nb * s.O, std::max<int64_t>(1, 8192 / P), [&](int64_t lo, int64_t hi) {
        for (int64_t t = lo; t < hi; ++t) {
          const int64_t j = t / s.O, o = t % s.O;
          std::memcpy(o0 + t * P, tmp + o * ld + j * P, sizeof(T) * P);
        }
      });
    } else if (s.groups == 1) {
      gemm<T>(nb, s.O, P, Kb, {wa, 0, Kb, 1}, {col, P, ld, 1}, out + n0 * s.O * P);
    } else {
      T* tmp = scratch<T>(1, nb * Og * P);
      for (int64_t g = 0; g < s.groups; ++g) {
        gemm<T>(nb, Og, P, Kb, {wa + g * Og * Kb, 0, Kb, 1}, {col + g * Kb * ld, P, ld, 1}, tmp);
        for (int64_t j = 0; j < nb; ++j)
          std::memcpy(out + ((n0 + j) * s.O + g * Og) * P, tmp + j * Og * P, sizeof(T) * Og * P);
      }
    }
    if (relu) {  // while the chunk's output is still in cache
      T* o = out + n0 * s.O * P;
      for (int64_t i = 0; i < nb * s.O * P; ++i) o[i] = o[i] > T(0) ? o[i] : T(0);
    }
  }
}

template <typename T>
void im2col_conv_backward(const ConvShape& s, const T* x, const T* w, const T* gout, T* gx, T* gw, T* gb,
                          const T* saved_col) {
  const int64_t taps = s.Cg() * s.KH * s.KW, P = s.OH() * s.OW(), CHW = s.C * s.H * s.W;
  const int64_t Kb = col_rows(s), O = s.O, Og = s.Og(), groups = s.groups;
  const bool fuse_bias = gw && s.bias;  // db is the ones row's column of the dW GEMM
  // Gathering gout into (O, nb*P) lets the weight GEMM run with K = nb*P. When an image's weight
  // partial (O, Kb) is much smaller than its gradient (O, P) -- few taps over a large image, as in
  // a first layer on raw pixels -- a batched per-image GEMM plus a reduction moves less memory.
  const bool per_image = gw && !gx && Kb * 4 <= P;
  const bool need_gr = gx || (gw && !per_image);
  const ConvGeom geom = geom_of(s, Kb), geom_plain = geom_of(s, taps);
  const int64_t nbmax = chunk_images(s, Kb);
  T* gr = need_gr ? scratch<T>(1, O * nbmax * P) : nullptr;
  T* col_scratch = gw && !saved_col ? scratch<T>(0, groups * Kb * nbmax * P) : nullptr;
  T* dcol = gx ? scratch<T>(2, groups * taps * nbmax * P) : nullptr;
  T* part = gw ? scratch<T>(3, O * Kb * (per_image ? nbmax : 1)) : nullptr;
  std::vector<T> acc(gw ? static_cast<size_t>(O * Kb) : 0, T(0));
  std::vector<double> bias_acc(gb && !fuse_bias ? static_cast<size_t>(O) : 0, 0.0);
  for (int64_t n0 = 0; n0 < s.N; n0 += nbmax) {
    const int64_t nb = std::min(nbmax, s.N - n0), ld = nb * P;
    const T* g0 = gout + n0 * O * P;
    if (need_gr) gather_grad_rows(g0, gr, O, P, nb);
    if (gw) {
      const T* col = saved_col ? saved_col + n0 * groups * Kb * P : col_scratch;
      if (!saved_col) im2col(x + n0 * CHW, col_scratch, geom, nb, ld);
      if (per_image) {
        // part (groups, nb, Og, Kb): image j's partial, added into acc in image order.
        for (int64_t g = 0; g < groups; ++g)
          gemm<T>(nb, Og, Kb, P, {g0 + g * Og * P, O * P, P, 1}, {col + g * Kb * ld, P, 1, ld},
                  part + g * nb * Og * Kb);
        for (int64_t g = 0; g < groups; ++g)
          for (int64_t j = 0; j < nb; ++j) {
            const T* src = part + (g * nb + j) * Og * Kb;
            T* dst = acc.data() + g * Og * Kb;
            for (int64_t i = 0; i < Og * Kb; ++i) dst[i] += src[i];
          }
      } else {
        const bool first = n0 == 0;
        T* dst = first ? acc.data() : part;
        for (int64_t g = 0; g < groups; ++g)
          gemm<T>(1, Og, Kb, ld, {gr + g * Og * ld, 0, ld, 1}, {col + g * Kb * ld, 0, 1, ld}, dst + g * Og * Kb);
        if (!first)
          for (int64_t i = 0; i < O * Kb; ++i) acc[i] += part[i];
      }
    }
    if (gb && !fuse_bias) {
      for (int64_t o = 0; o < O; ++o) {
        double sum = 0;
        for (int64_t j = 0; j < nb; ++j) {
          const T* row = g0 + (j * O + o) * P;
          for (int64_t i = 0; i < P; ++i) sum += row[i];
        }
        bias_acc[o] += sum;
      }
    }
    if (gx) {
      for (int64_t g = 0; g < groups; ++g)
        gemm<T>(1, taps, ld, Og, {w + g * Og * taps, 0, 1, taps}, {gr + g * Og * ld, 0, ld, 1}, dcol + g * taps * ld);
      col2im(dcol, gx + n0 * CHW, geom_plain, nb, ld);
    }
  }
  if (gw)
    for (int64_t o = 0; o < O; ++o) {
      std::copy(acc.data() + o * Kb, acc.data() + o * Kb + taps, gw + o * taps);
      if (fuse_bias && gb) gb[o] = acc[o * Kb + taps];
    }
  if (gb && !fuse_bias)
    for (int64_t o = 0; o < O; ++o) gb[o] = static_cast<T>(bias_acc[o]);
}

template void im2col_conv_forward<float>(const ConvShape&, const float*, const float*, const float*, float*, float*,
                                         bool);
template void im2col_conv_forward<double>(const ConvShape&, const double*, const double*, const double*, double*,
                                          double*, bool);
template void im2col_conv_backward<float>(const ConvShape&, const float*, const float*, const float*, float*, float*,
                                          float*, const float*);
template void im2col_conv_backward<double>(const ConvShape&, const double*, const double*, const double*, double*,
                                           double*, double*, const double*);

// ---------------------------------------------------------------- direct

namespace portable { extern const DirectKernels kDirectKernels; }
namespace avx2 { extern const DirectKernels kDirectKernels; }
namespace avx512 { extern const DirectKernels kDirectKernels; }

const DirectKernels* direct_kernels(std::string_view isa) {
  return pick_isa(isa, portable::kDirectKernels, avx2::kDirectKernels, avx512::kDirectKernels);
}

namespace {

// src planes (C, H, W) -> dst (C, H + 2*ph, W + 2*pw) with zeros around; a negative padding crops.
void pad_planes(const float* src, int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw, float* dst) {
  const int64_t Hp = H + 2 * ph, Wp = W + 2 * pw;
  const int64_t lo = std::max<int64_t>(0, pw), hi = std::min(Wp, W + pw);  // dst columns with a source
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < Hp; ++i) {
      float* d = dst + (c * Hp + i) * Wp;
      const int64_t si = i - ph;
      if (si < 0 || si >= H || lo >= hi) {
        std::fill_n(d, Wp, 0.0f);
        continue;
      }
      std::fill_n(d, lo, 0.0f);
      std::memcpy(d + lo, src + (c * H + si) * W + (lo - pw), sizeof(float) * static_cast<size_t>(hi - lo));
      std::fill_n(d + hi, Wp - hi, 0.0f);
    }
}

// Images per weight-gradient partial: the partials are summed in this fixed grouping whatever
// the thread count, so dW is reproducible across thread counts too.
constexpr int64_t kDirectImagesPerPartial = 8;

}  // namespace

void direct_conv_forward(const ConvShape& s, const float* x, const float* w, const float* b, bool relu, float* y,
                         const DirectKernels& k) {
  const int64_t Hp = s.H + 2 * s.ph, Wp = s.W + 2 * s.pw, CHW = s.C * s.H * s.W, OP = s.O * s.OH() * s.OW();
  const bool padded = s.ph != 0 || s.pw != 0;
  // Images per thread when there are enough; otherwise (batch-1 inference) each image's output
  // channels are split too, in blocks of 8 (a multiple of the kernel's channel block, so every
  // output element is computed by the same code whatever the split).
  const int64_t threads = get_num_threads();
  const int64_t parts = s.N >= threads ? 1 : std::min<int64_t>(num_chunks(threads, s.N), num_chunks(s.O, 8));
  const int64_t chunk = num_chunks(num_chunks(s.O, parts), 8) * 8;
  const int64_t taps = s.C * s.KH * s.KW, P = s.OH() * s.OW();
  parallel_for(0, s.N * parts, 1, [&](int64_t lo, int64_t hi) {
    float* xp = padded ? scratch<float>(0, s.C * Hp * Wp) : nullptr;
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t n = item / parts, o0 = (item % parts) * chunk, oc = std::min(chunk, s.O - o0);
      if (oc <= 0) continue;
      const float* src = x + n * CHW;
      if (padded) pad_planes(src, s.C, s.H, s.W, s.ph, s.pw, xp);
      k.forward(padded ? xp : src, s.C, Hp, Wp, w + o0 * taps, oc, s.KH, s.KW, b ? b + o0 : nullptr, relu,
                y + n * OP + o0 * P);
    }
  });
}

// src planes (C, H, W) padded by (ph, pw) -> their even and odd columns, xe and xo (C, Hp, We),
// We = (Wp + 1) / 2; the odd plane's last column is 0 when Wp is odd.
void split_padded_columns(const float* src, int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw, float* xe,
                          float* xo) {
  const int64_t Hp = H + 2 * ph, Wp = W + 2 * pw, We = (Wp + 1) / 2;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < Hp; ++i) {
      float* e = xe + (c * Hp + i) * We;
      float* o = xo + (c * Hp + i) * We;
      o[We - 1] = 0.0f;
      const int64_t si = i - ph;
      const float* srow = src + (c * H + si) * W;
      for (int64_t jp = 0; jp < Wp; ++jp) {
        const int64_t sj = jp - pw;
        const float v = si >= 0 && si < H && sj >= 0 && sj < W ? srow[sj] : 0.0f;
        (jp & 1 ? o : e)[jp / 2] = v;
      }
    }
}

void direct_conv_forward_pool2(const ConvShape& s, const float* x, const float* w, const float* b, bool relu,
                               float* yp, const DirectKernels& k) {
  const int64_t Hp = s.H + 2 * s.ph, Wp = s.W + 2 * s.pw, We = (Wp + 1) / 2, CHW = s.C * s.H * s.W;
  const int64_t PP = (s.OH() / 2) * (s.OW() / 2), taps = s.C * s.KH * s.KW;
  // Threads over images, and over blocks of 8 output channels when the batch is smaller than the
  // team (as direct_conv_forward).
  const int64_t threads = get_num_threads();
  const int64_t parts = s.N >= threads ? 1 : std::min<int64_t>(num_chunks(threads, s.N), num_chunks(s.O, 8));
  const int64_t chunk = num_chunks(num_chunks(s.O, parts), 8) * 8;
  parallel_for(0, s.N * parts, 1, [&](int64_t lo, int64_t hi) {
    float* xe = scratch<float>(0, 2 * s.C * Hp * We);
    float* xo = xe + s.C * Hp * We;
    int64_t split_n = -1;
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t n = item / parts, o0 = (item % parts) * chunk, oc = std::min(chunk, s.O - o0);
      if (oc <= 0) continue;
      if (n != split_n) split_padded_columns(x + n * CHW, s.C, s.H, s.W, s.ph, s.pw, xe, xo), split_n = n;
      k.forward_pool2(xe, xo, s.C, Hp, Wp, w + o0 * taps, oc, s.KH, s.KW, b ? b + o0 : nullptr, relu,
                      yp + (n * s.O + o0) * PP);
    }
  });
}

// dx = the full correlation of dy with the flipped weights, channels swapped: a direct forward
// over dy padded by (KH-1-ph, KW-1-pw) with weights w'(C, O, KH, KW) = w(O, C, KH-1-kh, KW-1-kw).
void direct_conv_backward_data(const ConvShape& s, const float* gy, const float* w, float* gx, const DirectKernels& k) {
  const int64_t OH = s.OH(), OW = s.OW(), KK = s.KH * s.KW;
  std::vector<float> wt(static_cast<size_t>(s.O * s.C * KK));
  for (int64_t o = 0; o < s.O; ++o)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t t = 0; t < KK; ++t) wt[(c * s.O + o) * KK + (KK - 1 - t)] = w[(o * s.C + c) * KK + t];
  const int64_t qh = s.KH - 1 - s.ph, qw = s.KW - 1 - s.pw;
  const int64_t Hp = OH + 2 * qh, Wp = OW + 2 * qw;
  parallel_for(0, s.N, 1, [&](int64_t lo, int64_t hi) {
    float* gp = scratch<float>(1, s.O * Hp * Wp);
    for (int64_t n = lo; n < hi; ++n) {
      pad_planes(gy + n * s.O * OH * OW, s.O, OH, OW, qh, qw, gp);
      k.forward(gp, s.O, Hp, Wp, wt.data(), s.C, s.KH, s.KW, nullptr, false, gx + n * s.C * s.H * s.W);
    }
  });
}

void direct_conv_backward_weights(const ConvShape& s, const float* x, const float* gy, float* gw, float* gb,
                                  const DirectKernels& k) {
  const int64_t Hp = s.H + 2 * s.ph, Wp = s.W + 2 * s.pw, CHW = s.C * s.H * s.W, OP = s.O * s.OH() * s.OW();
  const int64_t WN = s.O * s.C * s.KH * s.KW, stride = WN + s.O;  // one partial: dW then db
  const bool padded = s.ph != 0 || s.pw != 0;
  const int64_t parts = num_chunks(s.N, kDirectImagesPerPartial);
  std::vector<float> partial(static_cast<size_t>(parts * stride), 0.0f);
  parallel_for(0, parts, 1, [&](int64_t lo, int64_t hi) {
    float* xp = padded ? scratch<float>(0, s.C * Hp * Wp) : nullptr;
    for (int64_t p = lo; p < hi; ++p) {
      float* pw = partial.data() + p * stride;
      for (int64_t n = p * kDirectImagesPerPartial; n < std::min(s.N, (p + 1) * kDirectImagesPerPartial); ++n) {
        const float* src = x + n * CHW;
        if (padded) pad_planes(src, s.C, s.H, s.W, s.ph, s.pw, xp);
        k.weight_grad(padded ? xp : src, s.C, Hp, Wp, gy + n * OP, s.O, s.KH, s.KW, pw, gb ? pw + WN : nullptr);
      }
    }
  });
  for (int64_t i = 0; i < WN; ++i) gw[i] = 0.0f;
  if (gb)
    for (int64_t o = 0; o < s.O; ++o) gb[o] = 0.0f;
  for (int64_t p = 0; p < parts; ++p) {
    const float* pw = partial.data() + p * stride;
    for (int64_t i = 0; i < WN; ++i) gw[i] += pw[i];
    if (gb)
      for (int64_t o = 0; o < s.O; ++o) gb[o] += pw[WN + o];
  }
}

void conv_bias_grad(const float* gy, int64_t N, int64_t O, int64_t P, float* gb) {
  const auto& fk = float_kernels();
  parallel_for(0, O, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t o = lo; o < hi; ++o) {
      double sum = 0.0;
      for (int64_t n = 0; n < N; ++n) sum += fk.sum(gy + (n * O + o) * P, P);
      gb[o] = static_cast<float>(sum);
    }
  });
}

}  // namespace kiln::ops::cpu
