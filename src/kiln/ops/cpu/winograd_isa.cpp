// One instruction set's build of the Winograd tile transforms and lane transposes (see
// winograd.h). Compiled once per ISA with KILN_ISA_NS naming the namespace. Every value is a
// vector of kWinoLanes floats, one per image of the lane block, so the transforms are plain
// vector arithmetic. The transform matrices are constexpr tables; after unrolling, GCC folds the
// zero and unit coefficients away, so each transform costs only its nonzero terms.
// The portable build holds 8-float vectors in SSE register pairs; the helpers taking them are
// internal, so GCC's note that their ABI differs from an AVX build does not matter.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kiln/ops/cpu/winograd.h"

#ifndef KILN_ISA_NS
#error "KILN_ISA_NS must name the ISA namespace"
#endif

namespace kiln::ops::cpu::KILN_ISA_NS {

namespace {

constexpr int L = kWinoLanes;
typedef float v8 __attribute__((vector_size(L * 4)));

inline v8 ld(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void st(float* p, v8 v) { std::memcpy(p, &v, sizeof v); }

// ---------------------------------------------------------------- transform matrices

template <int M>
struct Wino;

template <>
struct Wino<2> {
  static constexpr int A = 4;
  static constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr float AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};

template <>
struct Wino<4> {
  static constexpr int A = 6;
  static constexpr float BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                     {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr float AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

// out = Mt @ in (Trans: Mt^T @ in), over vectors; zero terms skipped, +-1 terms without a multiply.
template <bool Trans, int R, int K>
inline void apply(const float (&Mt)[R][K], const v8* in, v8* out) {
  constexpr int NO = Trans ? K : R, NI = Trans ? R : K;
#pragma GCC unroll 8
  for (int i = 0; i < NO; ++i) {
    v8 acc = v8{};
    bool first = true;
#pragma GCC unroll 8
    for (int k = 0; k < NI; ++k) {
      const float c = Trans ? Mt[k][i] : Mt[i][k];
      if (c == 0.0f) continue;
      const v8 t = c == 1.0f ? in[k] : c == -1.0f ? -in[k] : c * in[k];
      acc = first ? t : acc + t;
      first = false;
    }
    out[i] = acc;
  }
}

// ---------------------------------------------------------------- transforms

// One tile, whatever the lanes hold (images or channels). V = B^T X B with X(r, k) at
// x + r*rs + k*cs; V(i, j) stored at v + (i*A + j)*ld_pos.
template <int M>
[[gnu::always_inline]] inline void input_tile(const float* x, int64_t rs, int64_t cs, float* v, int64_t ld_pos) {
  constexpr int A = Wino<M>::A;
  v8 t[A][A];  // t[r][j]: row r after the horizontal transform
  for (int r = 0; r < A; ++r) {
    v8 in[A];
    for (int k = 0; k < A; ++k) in[k] = ld(x + r * rs + k * cs);
    apply<false>(Wino<M>::BT, in, t[r]);
  }
  for (int j = 0; j < A; ++j) {
    v8 col[A], out[A];
    for (int r = 0; r < A; ++r) col[r] = t[r][j];
    apply<false>(Wino<M>::BT, col, out);
    for (int i = 0; i < A; ++i) st(v + (i * A + j) * ld_pos, out[i]);
  }
}

// y[p][q] = act(A^T M A + b) of one tile, M(i, j) at m + (i*A + j)*ld_pos.
template <int M>
[[gnu::always_inline]] inline void output_tile(const float* m, int64_t ld_pos, v8 b, bool relu, v8 (&y)[M][M]) {
  constexpr int A = Wino<M>::A;
  v8 t[A][M];  // t[i][q]: row i after the horizontal transform
  for (int i = 0; i < A; ++i) {
    v8 in[A];
    for (int j = 0; j < A; ++j) in[j] = ld(m + (i * A + j) * ld_pos);
    apply<false>(Wino<M>::AT, in, t[i]);
  }
  for (int q = 0; q < M; ++q) {
    v8 col[A], out[M];
    for (int i = 0; i < A; ++i) col[i] = t[i][q];
    apply<false>(Wino<M>::AT, col, out);
    for (int p = 0; p < M; ++p) {
      v8 r = out[p] + b;
      if (relu) r = r > 0.0f ? r : v8{};
      y[p][q] = r;
    }
  }
}

// Value (p, q) of a tile's output, or of its 2x2 max pool when Pool: tiles start at even rows and
// columns, so every window lies inside one tile. The comparisons are those of the separate 2x2
// pool (ops/pool.cpp): taps in row-major order, a larger or NaN tap wins, so the result is
// bitwise the unfused one.
template <int M, bool Pool>
[[gnu::always_inline]] inline void tile_value(const v8 (&y)[M][M], int p, int q, v8& out) {
  if constexpr (!Pool) {
    out = y[p][q];
  } else {
    v8 m = y[2 * p][2 * q];
    for (const v8& v : {y[2 * p][2 * q + 1], y[2 * p + 1][2 * q], y[2 * p + 1][2 * q + 1]})
      m = (v > m) | (v != v) ? v : m;
    out = m;
  }
}

template <int M>
void input_tf(const float* xl, int64_t C, int64_t TH, int64_t TW, float* v, int64_t ld_pos, int64_t ld_c) {
  const int64_t Hl = TH * M + 2, Wl = TW * M + 2;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t ty = 0; ty < TH; ++ty)
      for (int64_t tx = 0; tx < TW; ++tx)
        input_tile<M>(xl + ((c * Hl + ty * M) * Wl + tx * M) * L, Wl * L, L, v + c * ld_c + (ty * TW + tx) * L,
                      ld_pos);
}

// Pool: each activated tile is max-pooled 2x2 / stride 2 before it is stored, into yl
// (O, TH*M/2, TW*M/2, lanes).
template <int M, bool Pool>
void output_tf(const float* mm, int64_t ld_pos, int64_t ld_o, int64_t O, int64_t TH, int64_t TW, const float* bias,
               bool relu, float* yl) {
  constexpr int MS = Pool ? M / 2 : M;
  const int64_t Wo = TW * MS;
  for (int64_t o = 0; o < O; ++o) {
    const v8 b = v8{} + (bias ? bias[o] : 0.0f);
    for (int64_t ty = 0; ty < TH; ++ty)
      for (int64_t tx = 0; tx < TW; ++tx) {
        v8 y[M][M];
        output_tile<M>(mm + o * ld_o + (ty * TW + tx) * L, ld_pos, b, relu, y);
        float* dst = yl + ((o * TH * MS + ty * MS) * Wo + tx * MS) * L;
        for (int p = 0; p < MS; ++p)
          for (int q = 0; q < MS; ++q) {
            v8 val;
            tile_value<M, Pool>(y, p, q, val);
            st(dst + (p * Wo + q) * L, val);
          }
      }
  }
}

template <int M>
void grad_output_tf(const float* gyl, int64_t O, int64_t TH, int64_t TW, float* dm, int64_t ld_pos, int64_t ld_o) {
  constexpr int A = Wino<M>::A;
  const int64_t Wo = TW * M;
  for (int64_t o = 0; o < O; ++o)
    for (int64_t ty = 0; ty < TH; ++ty)
      for (int64_t tx = 0; tx < TW; ++tx) {
        const float* src = gyl + ((o * TH * M + ty * M) * Wo + tx * M) * L;
        v8 t[M][A];  // t[p][j]: output-gradient row p spread to the alpha positions
        for (int p = 0; p < M; ++p) {
          v8 in[M];
          for (int q = 0; q < M; ++q) in[q] = ld(src + (p * Wo + q) * L);
          apply<true>(Wino<M>::AT, in, t[p]);
        }
        float* dst = dm + o * ld_o + (ty * TW + tx) * L;
        for (int j = 0; j < A; ++j) {
          v8 col[M], out[A];
          for (int p = 0; p < M; ++p) col[p] = t[p][j];
          apply<true>(Wino<M>::AT, col, out);
          for (int i = 0; i < A; ++i) st(dst + (i * A + j) * ld_pos, out[i]);
        }
      }
}

template <int M>
void grad_input_tf(const float* dv, int64_t ld_pos, int64_t ld_c, int64_t C, int64_t TH, int64_t TW, float* gxl) {
  constexpr int A = Wino<M>::A;
  const int64_t Hl = TH * M + 2, Wl = TW * M + 2;
  std::fill_n(gxl, C * Hl * Wl * L, 0.0f);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t ty = 0; ty < TH; ++ty)
      for (int64_t tx = 0; tx < TW; ++tx) {
        const float* src = dv + c * ld_c + (ty * TW + tx) * L;
        v8 t[A][A];  // t[i][k]: row i of dV after the horizontal adjoint
        for (int i = 0; i < A; ++i) {
          v8 in[A];
          for (int j = 0; j < A; ++j) in[j] = ld(src + (i * A + j) * ld_pos);
          apply<true>(Wino<M>::BT, in, t[i]);
        }
        float* dst = gxl + ((c * Hl + ty * M) * Wl + tx * M) * L;
        for (int k = 0; k < A; ++k) {
          v8 col[A], out[A];
          for (int i = 0; i < A; ++i) col[i] = t[i][k];
          apply<true>(Wino<M>::BT, col, out);
          for (int r = 0; r < A; ++r) {
            float* d = dst + (r * Wl + k) * L;
            st(d, ld(d) + out[r]);
          }
        }
      }
}

// ---------------------------------------------------------------- channel lanes (small batches)

// The same transforms with 8 channels per vector instead of 8 images, for batches too small to
// fill image lanes. xt (Hl, Wl, C) is one padded image, channels innermost; tiles t in [t0, t1),
// t = ty*TW + tx. The per-tile work is input_tile / output_tile, as for image lanes, so a small
// batch gets the values the image-lane layout would give.
template <int M>
void input_cl_tf(const float* xt, int64_t Wl, int64_t C, int64_t TW, int64_t t0, int64_t t1, float* v,
                 int64_t ld_pos) {
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t ty = t / TW, tx = t % TW;
    for (int64_t c0 = 0; c0 < C; c0 += L)
      input_tile<M>(xt + (ty * M * Wl + tx * M) * C + c0, Wl * C, C, v + t * C + c0, ld_pos);
  }
}

// mm[pos*ld_pos + t*O + o] -> act(A^T M A + bias) (pooled 2x2 when Pool) into one image's planes
// y (O, YH, YW), rows and columns past YH, YW dropped.
template <int M, bool Pool>
void output_cl_tf(const float* mm, int64_t ld_pos, int64_t O, int64_t TW, int64_t t0, int64_t t1, const float* bias,
                  bool relu, float* y, int64_t YH, int64_t YW) {
  constexpr int MS = Pool ? M / 2 : M;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t ty = t / TW, tx = t % TW;
    for (int64_t o0 = 0; o0 < O; o0 += L) {
      v8 yv[M][M];
      output_tile<M>(mm + t * O + o0, ld_pos, bias ? ld(bias + o0) : v8{}, relu, yv);
      for (int p = 0; p < MS; ++p)
        for (int q = 0; q < MS; ++q) {
          const int64_t row = ty * MS + p, col = tx * MS + q;
          if (row >= YH || col >= YW) continue;
          v8 val;
          tile_value<M, Pool>(yv, p, q, val);
          float* dst = y + (o0 * YH + row) * YW + col;
          for (int l = 0; l < L; ++l) dst[l * YH * YW] = val[l];  // lane l is channel o0 + l
        }
    }
  }
}

void input_cl(int m, const float* xt, int64_t Wl, int64_t C, int64_t TW, int64_t t0, int64_t t1, float* v,
              int64_t ld_pos) {
  if (m == 2) return input_cl_tf<2>(xt, Wl, C, TW, t0, t1, v, ld_pos);
  input_cl_tf<4>(xt, Wl, C, TW, t0, t1, v, ld_pos);
}
void output_cl(int m, bool pool, const float* mm, int64_t ld_pos, int64_t O, int64_t TW, int64_t t0, int64_t t1,
               const float* bias, bool relu, float* y, int64_t YH, int64_t YW) {
  if (m == 2 && pool) return output_cl_tf<2, true>(mm, ld_pos, O, TW, t0, t1, bias, relu, y, YH, YW);
  if (m == 2) return output_cl_tf<2, false>(mm, ld_pos, O, TW, t0, t1, bias, relu, y, YH, YW);
  if (pool) return output_cl_tf<4, true>(mm, ld_pos, O, TW, t0, t1, bias, relu, y, YH, YW);
  output_cl_tf<4, false>(mm, ld_pos, O, TW, t0, t1, bias, relu, y, YH, YW);
}

void input(int m, const float* xl, int64_t C, int64_t TH, int64_t TW, float* v, int64_t ld_pos, int64_t ld_c) {
  if (m == 2) return input_tf<2>(xl, C, TH, TW, v, ld_pos, ld_c);
  input_tf<4>(xl, C, TH, TW, v, ld_pos, ld_c);
}
void output(int m, const float* mm, int64_t ld_pos, int64_t ld_o, int64_t O, int64_t TH, int64_t TW, const float* bias,
            bool relu, float* yl) {
  if (m == 2) return output_tf<2, false>(mm, ld_pos, ld_o, O, TH, TW, bias, relu, yl);
  output_tf<4, false>(mm, ld_pos, ld_o, O, TH, TW, bias, relu, yl);
}
void output_pool2(int m, const float* mm, int64_t ld_pos, int64_t ld_o, int64_t O, int64_t TH, int64_t TW,
                  const float* bias, bool relu, float* yl) {
  if (m == 2) return output_tf<2, true>(mm, ld_pos, ld_o, O, TH, TW, bias, relu, yl);
  output_tf<4, true>(mm, ld_pos, ld_o, O, TH, TW, bias, relu, yl);
}
void grad_output(int m, const float* gyl, int64_t O, int64_t TH, int64_t TW, float* dm, int64_t ld_pos, int64_t ld_o) {
  if (m == 2) return grad_output_tf<2>(gyl, O, TH, TW, dm, ld_pos, ld_o);
  grad_output_tf<4>(gyl, O, TH, TW, dm, ld_pos, ld_o);
}
void grad_input(int m, const float* dv, int64_t ld_pos, int64_t ld_c, int64_t C, int64_t TH, int64_t TW, float* gxl) {
  if (m == 2) return grad_input_tf<2>(dv, ld_pos, ld_c, C, TH, TW, gxl);
  grad_input_tf<4>(dv, ld_pos, ld_c, C, TH, TW, gxl);
}

// ---------------------------------------------------------------- lane transposes

// r[i][j] -> r[j][i] for an 8x8 block held in eight vectors (unpack, shuffle, 128-bit permute).
inline void transpose8(v8 r[8]) {
  v8 t[8], s[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    s[i + 1] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    s[i + 2] = __builtin_shufflevector(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    s[i + 3] = __builtin_shufflevector(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = __builtin_shufflevector(s[i], s[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    r[i + 4] = __builtin_shufflevector(s[i], s[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

float* stage_buffer(int64_t n) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

void to_lanes(const float* src, int64_t img_stride, int nl, int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw,
              int64_t Hl, int64_t Wl, float* dst) {
  const int64_t W8 = (Wl + 7) / 8 * 8;
  float* stage = stage_buffer(L * W8);  // stage[l][j]: row of image l, already padded
  const int64_t lo = std::clamp<int64_t>(pw, 0, Wl), hi = std::clamp<int64_t>(pw + W, 0, Wl);
  std::fill_n(stage, L * W8, 0.0f);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < Hl; ++i) {
      float* drow = dst + (c * Hl + i) * Wl * L;
      const int64_t si = i - ph;
      if (si < 0 || si >= H || nl == 0) {
        std::fill_n(drow, Wl * L, 0.0f);
        continue;
      }
      for (int l = 0; l < nl; ++l)
        std::memcpy(stage + l * W8 + lo, src + l * img_stride + (c * H + si) * W + (lo - pw),
                    sizeof(float) * static_cast<size_t>(hi - lo));
      for (int64_t j0 = 0; j0 < Wl; j0 += 8) {
        v8 r[8];
        for (int l = 0; l < 8; ++l) r[l] = ld(stage + l * W8 + j0);
        transpose8(r);
        const int64_t nq = std::min<int64_t>(8, Wl - j0);
        for (int64_t q = 0; q < nq; ++q) st(drow + (j0 + q) * L, r[q]);
      }
    }
}

void from_lanes(const float* src, int64_t C, int64_t Hl, int64_t Wl, int64_t oh, int64_t ow, int64_t H, int64_t W,
                int nl, float* dst, int64_t img_stride) {
  const int64_t W8 = (W + 7) / 8 * 8;
  float* stage = stage_buffer(L * W8);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < H; ++i) {
      const float* srow = src + ((c * Hl + i + oh) * Wl + ow) * L;
      for (int64_t j0 = 0; j0 < W; j0 += 8) {
        v8 r[8];
        for (int q = 0; q < 8; ++q) r[q] = ld(srow + (j0 + q) * L);
        transpose8(r);
        for (int l = 0; l < 8; ++l) st(stage + l * W8 + j0, r[l]);
      }
      for (int l = 0; l < nl; ++l)
        std::memcpy(dst + l * img_stride + (c * H + i) * W, stage + l * W8, sizeof(float) * static_cast<size_t>(W));
    }
}

}  // namespace

extern const WinogradKernels kWinogradKernels;
const WinogradKernels kWinogradKernels{KILN_ISA_NAME, to_lanes,    from_lanes, input,    output, output_pool2,
                                         grad_output,    grad_input, input_cl, output_cl};

}  // namespace kiln::ops::cpu::KILN_ISA_NS
