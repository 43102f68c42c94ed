// One instruction set's build of the direct convolution kernels (see DirectKernels in
// conv_kernels.h). CMake compiles this file once per ISA with KILN_ISA_NS naming the namespace;
// the loops use GCC vector types as wide as the ISA's registers (4, 8 or 16 floats), so one
// source gives SSE, AVX2 and AVX-512 code, and a*b+c contracts to FMA where the ISA has it.
#include <algorithm>
#include <cstring>

#include "kiln/ops/cpu/conv_kernels.h"

#ifndef KILN_ISA_NS
#error "KILN_ISA_NS must name the ISA namespace"
#endif

namespace kiln::ops::cpu::KILN_ISA_NS {

namespace {

#if defined(__AVX512F__)
constexpr int kV = 16;
#elif defined(__AVX2__)
constexpr int kV = 8;
#else
constexpr int kV = 4;
#endif
typedef float vf __attribute__((vector_size(kV * 4)));
typedef int32_t vi __attribute__((vector_size(kV * 4)));

inline vf ld(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void st(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vf splat(float s) { return vf{} + s; }
// Lane sum in a fixed order (lane 0 first), so the result never depends on the build's pairing.
inline float hsum(vf v) {
  float s = 0.0f;
  for (int i = 0; i < kV; ++i) s += v[i];
  return s;
}
// Lanes >= first set, others clear: the not-yet-covered part of an overlapping last vector.
inline vi lanes_from(int first) {
  vi m;
  for (int i = 0; i < kV; ++i) m[i] = i >= first ? -1 : 0;
  return m;
}

// ---------------------------------------------------------------- forward

// OB output channels at once, each with its own accumulator per kV outputs; the input vector of
// each tap is loaded once for all OB channels. Output rows are covered by full vectors, the last
// one shifted left to end at the row end (it recomputes a few outputs with identical values),
// so no masking is needed. Needs OW >= kV.
template <int OB>
void forward_block(const float* xp, int64_t C, int64_t Hp, int64_t Wp, const float* w, int64_t KH, int64_t KW,
                   const float* bias, bool relu, float* y) {
  const int64_t OH = Hp - KH + 1, OW = Wp - KW + 1, P = OH * OW, taps = C * KH * KW;
  for (int64_t oh = 0; oh < OH; ++oh) {
    for (int64_t p0 = 0;; p0 += kV) {
      const int64_t p = std::min(p0, OW - kV);
      vf acc[OB];
      for (int ob = 0; ob < OB; ++ob) acc[ob] = splat(bias ? bias[ob] : 0.0f);
      for (int64_t c = 0; c < C; ++c)
        for (int64_t kh = 0; kh < KH; ++kh) {
          const float* row = xp + (c * Hp + oh + kh) * Wp + p;
          const float* wr = w + (c * KH + kh) * KW;
          for (int64_t kw = 0; kw < KW; ++kw) {
            const vf xv = ld(row + kw);
            for (int ob = 0; ob < OB; ++ob) acc[ob] += wr[ob * taps + kw] * xv;
          }
        }
      for (int ob = 0; ob < OB; ++ob) {
        if (relu) acc[ob] = acc[ob] > 0.0f ? acc[ob] : vf{};
        st(y + ob * P + oh * OW + p, acc[ob]);
      }
      if (p0 + kV >= OW) break;
    }
  }
}

// The same for a kernel size known at compile time (3x3 here), with NP output vectors per
// channel in flight: OB*NP independent accumulators hide the FMA latency, each broadcast weight
// serves NP vectors and each input load OB channels.
template <int KH, int KW, int OB, int NP>
inline void forward_fixed(const float* xp, int64_t C, int64_t Hp, int64_t Wp, const float* w, int64_t oh,
                          const int64_t* pos, const float* bias, bool relu, float* yrow, int64_t P) {
  constexpr int taps = KH * KW;
  vf acc[OB][NP];
  for (int ob = 0; ob < OB; ++ob)
    for (int q = 0; q < NP; ++q) acc[ob][q] = splat(bias ? bias[ob] : 0.0f);
  for (int64_t c = 0; c < C; ++c) {
    const float* wc = w + c * taps;
#pragma GCC unroll 16
    for (int kh = 0; kh < KH; ++kh) {
      const float* row = xp + (c * Hp + oh + kh) * Wp;
#pragma GCC unroll 16
      for (int kw = 0; kw < KW; ++kw) {
        vf xv[NP];
        for (int q = 0; q < NP; ++q) xv[q] = ld(row + pos[q] + kw);
        for (int ob = 0; ob < OB; ++ob) {
          const vf wv = splat(wc[ob * C * taps + kh * KW + kw]);
          for (int q = 0; q < NP; ++q) acc[ob][q] += wv * xv[q];
        }
      }
    }
  }
  for (int ob = 0; ob < OB; ++ob)
    for (int q = 0; q < NP; ++q) st(yrow + ob * P + pos[q], relu ? (acc[ob][q] > 0.0f ? acc[ob][q] : vf{}) : acc[ob][q]);
}

template <int KH, int KW, int OB>
void forward_block_fixed(const float* xp, int64_t C, int64_t Hp, int64_t Wp, const float* w, const float* bias,
                         bool relu, float* y) {
  const int64_t OH = Hp - KH + 1, OW = Wp - KW + 1, P = OH * OW;
  int64_t pos[64];  // vector starts along a row; the last one ends at the row end
  int np = 0;
  for (int64_t p0 = 0;; p0 += kV) {
    pos[np++] = std::min(p0, OW - kV);
    if (p0 + kV >= OW || np == 64) break;
  }
  for (int64_t oh = 0; oh < OH; ++oh) {
    float* yrow = y + oh * OW;
    int i = 0;
    for (; i + 2 <= np; i += 2) forward_fixed<KH, KW, OB, 2>(xp, C, Hp, Wp, w, oh, pos + i, bias, relu, yrow, P);
    if (i < np) forward_fixed<KH, KW, OB, 1>(xp, C, Hp, Wp, w, oh, pos + i, bias, relu, yrow, P);
  }
}

// Rows narrower than a vector: plain loops.
void forward_scalar(const float* xp, int64_t C, int64_t Hp, int64_t Wp, const float* w, int64_t O, int64_t KH,
                    int64_t KW, const float* bias, bool relu, float* y) {
  const int64_t OH = Hp - KH + 1, OW = Wp - KW + 1;
  for (int64_t o = 0; o < O; ++o)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        float acc = bias ? bias[o] : 0.0f;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t kw = 0; kw < KW; ++kw)
              acc += w[((o * C + c) * KH + kh) * KW + kw] * xp[(c * Hp + oh + kh) * Wp + ow + kw];
        y[(o * OH + oh) * OW + ow] = relu && !(acc > 0.0f) ? 0.0f : acc;
      }
}

void forward(const float* xp, int64_t C, int64_t Hp, int64_t Wp, const float* w, int64_t O, int64_t KH, int64_t KW,
             const float* bias, bool relu, float* y) {
  const int64_t OW = Wp - KW + 1, P = (Hp - KH + 1) * OW, taps = C * KH * KW;
  if (OW < kV) return forward_scalar(xp, C, Hp, Wp, w, O, KH, KW, bias, relu, y);
  if (KH == 3 && KW == 3 && OW <= 64 * kV) {
    int64_t o = 0;
    for (; o + 4 <= O; o += 4)
      forward_block_fixed<3, 3, 4>(xp, C, Hp, Wp, w + o * taps, bias ? bias + o : nullptr, relu, y + o * P);
    for (; o < O; ++o)
      forward_block_fixed<3, 3, 1>(xp, C, Hp, Wp, w + o * taps, bias ? bias + o : nullptr, relu, y + o * P);
    return;
  }
  constexpr int kOB = 4;
  int64_t o = 0;
  for (; o + kOB <= O; o += kOB)
    forward_block<kOB>(xp, C, Hp, Wp, w + o * taps, KH, KW, bias ? bias + o : nullptr, relu, y + o * P);
  const float* bo = bias ? bias + o : nullptr;
  switch (O - o) {
    case 3: forward_block<3>(xp, C, Hp, Wp, w + o * taps, KH, KW, bo, relu, y + o * P); break;
    case 2: forward_block<2>(xp, C, Hp, Wp, w + o * taps, KH, KW, bo, relu, y + o * P); break;
    case 1: forward_block<1>(xp, C, Hp, Wp, w + o * taps, KH, KW, bo, relu, y + o * P); break;
    default: break;
  }
}

// ---------------------------------------------------------------- forward + 2x2 max pool

// The 2x2 stride-2 max pool of act(bias + conv) at pooled row ph, columns j .. j+kV-1, for OB
// channels, without the full-size output: the two conv rows 2ph, 2ph+1 and both column parities
// are four accumulators per channel. Conv column 2i + t reads padded column 2i + t + kw, i.e.
// xe[i + (t+kw)/2] or xo[i + (t+kw-1)/2]: contiguous vectors, KW + 1 loads per input row serve all
// of them. Each accumulator sums its taps in forward_fixed's order (c, kh, kw, from the bias),
// and the pool compares as ops/pool.cpp does, so the result is bitwise the unfused one.
template <int OB>
[[gnu::always_inline]] inline void pool2_vector(const float* xe, const float* xo, int64_t C, int64_t Hp, int64_t We,
                                                const float* w, int64_t KH, int64_t KW, int64_t ph, int64_t j,
                                                const float* bias, bool relu, float* y, int64_t PP, int64_t PW) {
  const int64_t taps = KH * KW;
  vf acc[OB][2][2];  // [channel][conv row 2ph + r][column parity]
  for (int ob = 0; ob < OB; ++ob)
    for (auto& r : acc[ob])
      for (auto& a : r) a = splat(bias ? bias[ob] : 0.0f);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t ir = 0; ir <= KH; ++ir) {  // input row 2ph + ir: kh = ir for conv row 0, ir - 1 for row 1
      const int64_t row = (c * Hp + 2 * ph + ir) * We + j;
      vf xs[9];  // padded columns 2i + t, t = 0 .. KW
      for (int64_t t = 0; t <= KW; ++t) xs[t] = t & 1 ? ld(xo + row + (t - 1) / 2) : ld(xe + row + t / 2);
      for (int ob = 0; ob < OB; ++ob) {
        const float* wc = w + ob * C * taps + c * taps;
        for (int r = 0; r < 2; ++r) {
          const int64_t kh = ir - r;
          if (kh < 0 || kh >= KH) continue;
          for (int64_t kw = 0; kw < KW; ++kw) {
            const vf wv = splat(wc[kh * KW + kw]);
            acc[ob][r][0] += wv * xs[kw];
            acc[ob][r][1] += wv * xs[kw + 1];
          }
        }
      }
    }
  for (int ob = 0; ob < OB; ++ob) {
    vf m{};
    for (int k = 0; k < 4; ++k) {
      vf v = acc[ob][k / 2][k % 2];
      if (relu) v = v > 0.0f ? v : vf{};
      m = k == 0 ? v : ((v > m) | (v != v)) ? v : m;
    }
    st(y + ob * PP + ph * PW + j, m);
  }
}

template <int OB>
void forward_pool2_block(const float* xe, const float* xo, int64_t C, int64_t Hp, int64_t We, const float* w,
                         int64_t KH, int64_t KW, const float* bias, bool relu, float* y, int64_t PH, int64_t PW) {
  for (int64_t ph = 0; ph < PH; ++ph)
    for (int64_t j0 = 0;; j0 += kV) {
      const int64_t j = std::min(j0, PW - kV);  // the last vector ends at the row end
      if (KH == 3 && KW == 3)                   // constants the compiler unrolls
        pool2_vector<OB>(xe, xo, C, Hp, We, w, 3, 3, ph, j, bias, relu, y, PH * PW, PW);
      else
        pool2_vector<OB>(xe, xo, C, Hp, We, w, KH, KW, ph, j, bias, relu, y, PH * PW, PW);
      if (j0 + kV >= PW) break;
    }
}

// Pooled rows narrower than a vector: the same sums one output at a time.
void forward_pool2_scalar(const float* xe, const float* xo, int64_t C, int64_t Hp, int64_t We, const float* w,
                          int64_t O, int64_t KH, int64_t KW, const float* bias, bool relu, float* y, int64_t PH,
                          int64_t PW) {
  auto padded = [&](int64_t c, int64_t h, int64_t col) {
    const float* plane = col & 1 ? xo : xe;
    return plane[(c * Hp + h) * We + col / 2];
  };
  for (int64_t o = 0; o < O; ++o)
    for (int64_t ph = 0; ph < PH; ++ph)
      for (int64_t pw = 0; pw < PW; ++pw) {
        float m = 0.0f;
        for (int k = 0; k < 4; ++k) {
          const int64_t oh = 2 * ph + k / 2, ow = 2 * pw + k % 2;
          float acc = bias ? bias[o] : 0.0f;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw)
                acc += w[((o * C + c) * KH + kh) * KW + kw] * padded(c, oh + kh, ow + kw);
          if (relu && !(acc > 0.0f)) acc = 0.0f;
          m = k == 0 ? acc : (acc > m || acc != acc) ? acc : m;
        }
        y[(o * PH + ph) * PW + pw] = m;
      }
}

void forward_pool2(const float* xe, const float* xo, int64_t C, int64_t Hp, int64_t Wp, const float* w, int64_t O,
                   int64_t KH, int64_t KW, const float* bias, bool relu, float* y) {
  const int64_t PH = (Hp - KH + 1) / 2, PW = (Wp - KW + 1) / 2, We = (Wp + 1) / 2, taps = C * KH * KW;
  if (PW < kV || KW > 8) return forward_pool2_scalar(xe, xo, C, Hp, We, w, O, KH, KW, bias, relu, y, PH, PW);
  int64_t o = 0;
  for (; o + 2 <= O; o += 2)
    forward_pool2_block<2>(xe, xo, C, Hp, We, w + o * taps, KH, KW, bias ? bias + o : nullptr, relu,
                           y + o * PH * PW, PH, PW);
  if (o < O)
    forward_pool2_block<1>(xe, xo, C, Hp, We, w + o * taps, KH, KW, bias ? bias + o : nullptr, relu,
                           y + o * PH * PW, PH, PW);
}

// ---------------------------------------------------------------- weight gradient

// gw[kw0 .. kw0+NK) of one (o, c, kh) += sum over the output plane of gy * the input under the
// tap. One pass over the plane with NK accumulators; the last vector of each row overlaps the
// previous one and is masked to the lanes not yet counted.
template <int NK>
void wgrad_taps(const float* xrow0, int64_t Wp, const float* g, int64_t OH, int64_t OW, int64_t kw0, float* gw) {
  vf acc[NK];
  for (int k = 0; k < NK; ++k) acc[k] = vf{};
  const int64_t full = OW / kV, rem = OW % kV, plast = OW - kV;
  const vi tail = lanes_from(static_cast<int>(kV - rem));
  for (int64_t oh = 0; oh < OH; ++oh) {
    const float* gr = g + oh * OW;
    const float* xr = xrow0 + oh * Wp + kw0;
    for (int64_t j = 0; j < full; ++j) {
      const vf gv = ld(gr + j * kV);
      for (int k = 0; k < NK; ++k) acc[k] += gv * ld(xr + j * kV + k);
    }
    if (rem) {
      const vf gv = tail ? ld(gr + plast) : vf{};
      for (int k = 0; k < NK; ++k) acc[k] += gv * ld(xr + plast + k);
    }
  }
  for (int k = 0; k < NK; ++k) gw[kw0 + k] += hsum(acc[k]);
}

// All KH*KW taps of one (o, c) in one pass over the plane (3x3: nine accumulators, nine
// independent FMA chains), plus the bias sum riding along when asked.
template <int KH, int KW>
void wgrad_fixed(const float* xc, int64_t Wp, const float* g, int64_t OH, int64_t OW, float* gw, float* gb) {
  vf acc[KH * KW], bacc = vf{};
  for (int t = 0; t < KH * KW; ++t) acc[t] = vf{};
  const int64_t full = OW / kV, rem = OW % kV, plast = OW - kV;
  const vi tail = lanes_from(static_cast<int>(kV - rem));
  auto step = [&](const float* xr, vf gv) {
#pragma GCC unroll 16
    for (int kh = 0; kh < KH; ++kh)
#pragma GCC unroll 16
      for (int kw = 0; kw < KW; ++kw) acc[kh * KW + kw] += gv * ld(xr + kh * Wp + kw);
    if (gb) bacc += gv;
  };
  for (int64_t oh = 0; oh < OH; ++oh) {
    const float* gr = g + oh * OW;
    const float* xr = xc + oh * Wp;
    for (int64_t j = 0; j < full; ++j) step(xr + j * kV, ld(gr + j * kV));
    if (rem) step(xr + plast, tail ? ld(gr + plast) : vf{});
  }
  for (int t = 0; t < KH * KW; ++t) gw[t] += hsum(acc[t]);
  if (gb) *gb += hsum(bacc);
}

void weight_grad_scalar(const float* xp, int64_t C, int64_t Hp, int64_t Wp, const float* gy, int64_t O, int64_t KH,
                        int64_t KW, float* gw, float* gb) {
  const int64_t OH = Hp - KH + 1, OW = Wp - KW + 1, P = OH * OW;
  for (int64_t o = 0; o < O; ++o) {
    const float* g = gy + o * P;
    if (gb) {
      float s = 0.0f;
      for (int64_t i = 0; i < P; ++i) s += g[i];
      gb[o] += s;
    }
    for (int64_t c = 0; c < C; ++c)
      for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t kw = 0; kw < KW; ++kw) {
          float s = 0.0f;
          for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) s += g[oh * OW + ow] * xp[(c * Hp + oh + kh) * Wp + ow + kw];
          gw[((o * C + c) * KH + kh) * KW + kw] += s;
        }
  }
}

void weight_grad(const float* xp, int64_t C, int64_t Hp, int64_t Wp, const float* gy, int64_t O, int64_t KH,
                 int64_t KW, float* gw, float* gb) {
  const int64_t OH = Hp - KH + 1, OW = Wp - KW + 1, P = OH * OW;
  if (OW < kV) return weight_grad_scalar(xp, C, Hp, Wp, gy, O, KH, KW, gw, gb);
  const int64_t full = OW / kV, rem = OW % kV, plast = OW - kV;
  const vi tail = lanes_from(static_cast<int>(kV - rem));
  if (KH == 3 && KW == 3) {
    for (int64_t o = 0; o < O; ++o)
      for (int64_t c = 0; c < C; ++c)
        wgrad_fixed<3, 3>(xp + c * Hp * Wp, Wp, gy + o * P, OH, OW, gw + (o * C + c) * 9, gb && c == 0 ? gb + o : nullptr);
    return;
  }
  for (int64_t o = 0; o < O; ++o) {
    const float* g = gy + o * P;
    if (gb) {
      vf acc = vf{};
      for (int64_t oh = 0; oh < OH; ++oh) {
        for (int64_t j = 0; j < full; ++j) acc += ld(g + oh * OW + j * kV);
        if (rem) acc += tail ? ld(g + oh * OW + plast) : vf{};
      }
      gb[o] += hsum(acc);
    }
    for (int64_t c = 0; c < C; ++c)
      for (int64_t kh = 0; kh < KH; ++kh) {
        const float* xrow0 = xp + (c * Hp + kh) * Wp;
        float* gwr = gw + ((o * C + c) * KH + kh) * KW;
        for (int64_t kw0 = 0; kw0 < KW; kw0 += 8) {
          switch (std::min<int64_t>(8, KW - kw0)) {
            case 1: wgrad_taps<1>(xrow0, Wp, g, OH, OW, kw0, gwr); break;
            case 2: wgrad_taps<2>(xrow0, Wp, g, OH, OW, kw0, gwr); break;
            case 3: wgrad_taps<3>(xrow0, Wp, g, OH, OW, kw0, gwr); break;
            case 4: wgrad_taps<4>(xrow0, Wp, g, OH, OW, kw0, gwr); break;
            case 5: wgrad_taps<5>(xrow0, Wp, g, OH, OW, kw0, gwr); break;
            case 6: wgrad_taps<6>(xrow0, Wp, g, OH, OW, kw0, gwr); break;
            case 7: wgrad_taps<7>(xrow0, Wp, g, OH, OW, kw0, gwr); break;
            default: wgrad_taps<8>(xrow0, Wp, g, OH, OW, kw0, gwr); break;
          }
        }
      }
  }
}

}  // namespace

extern const DirectKernels kDirectKernels;
const DirectKernels kDirectKernels{KILN_ISA_NAME, forward, forward_pool2, weight_grad};

}  // namespace kiln::ops::cpu::KILN_ISA_NS
