// The Winograd driver (see winograd.h): weight transforms, chunking of the batch into lane
// blocks, the alpha^2 GEMMs, threading. Forward and input-gradient work is split over chunks of
// lane blocks, each chunk running its whole pipeline (transpose, transform, GEMM, transform,
// transpose back) on one thread while its buffers are cache-resident. The weight gradient is a
// GEMM per chunk over its tiles; the chunk partials are added in chunk order, so it is
// deterministic whatever the thread count.
#include "kiln/ops/cpu/winograd.h"

#include <algorithm>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/float_kernels.h"
#include "kiln/ops/cpu/gemm.h"

namespace kiln::ops::cpu {

namespace portable { extern const WinogradKernels kWinogradKernels; }
namespace avx2 { extern const WinogradKernels kWinogradKernels; }
namespace avx512 { extern const WinogradKernels kWinogradKernels; }

const WinogradKernels* winograd_kernels(std::string_view isa) {
  return pick_isa(isa, portable::kWinogradKernels, avx2::kWinogradKernels, avx512::kWinogradKernels);
}

namespace {

constexpr int L = kWinoLanes;
constexpr int64_t kSlack = 8 * L;  // from_lanes reads up to 7 columns past its last one

// Distance between the alpha^2 position planes of V, M, dM and dV: rows*ld plus one cache line,
// so that the 16 or 36 planes a tile transform touches do not all map to the same few L1 sets
// (rows*ld is often a multiple of 2 KB).
inline int64_t pstride(int64_t rows, int64_t ld) { return rows * ld + 16; }

// G (alpha x 3) of F(m, 3): U = G w G^T.
constexpr double kG2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
constexpr double kG4[6][3] = {{1.0 / 4, 0, 0},
                              {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                              {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                              {1.0 / 24, 1.0 / 12, 1.0 / 6},
                              {1.0 / 24, -1.0 / 12, 1.0 / 6},
                              {0, 0, 1}};

inline double g_at(int m, int i, int k) { return m == 2 ? kG2[i][k] : kG4[i][k]; }

struct Plan {
  int m, A, A2;
  int64_t TH, TW, Hl, Wl;  // tiles per image, lane-block image size (with padding)
  int64_t NB;              // lane blocks
  int64_t tpb;             // tile-lanes per lane block: TH*TW*L
  int64_t T;               // tile-lanes in the batch: NB*tpb
  int64_t cb;              // lane blocks per chunk
  Plan(int m_, const ConvShape& s) : m(m_), A(m_ + 2), A2((m_ + 2) * (m_ + 2)) {
    TH = (s.OH() + m - 1) / m, TW = (s.OW() + m - 1) / m;
    Hl = TH * m + 2, Wl = TW * m + 2;
    NB = (s.N + L - 1) / L;
    tpb = TH * TW * L;
    T = NB * tpb;
    // About 160 tile-lanes per chunk (two lane blocks of the cnn's second layer): enough columns
    // for an efficient GEMM, few enough that a chunk's buffers stay near the L2 cache (measured:
    // 144 and 216 about equal, 72 and 400+ slower).
    cb = std::clamp<int64_t>(160 / tpb, 1, NB);
  }
  int64_t chunks() const { return (NB + cb - 1) / cb; }
  int nl(const ConvShape& s, int64_t bl) const { return static_cast<int>(std::min<int64_t>(L, s.N - bl * L)); }
};

// GG (A2, 9): GG[i*A + j][k*3 + l] = G[i][k] * G[j][l], so that for one (o, c) the transform
// G w G^T is GG @ w (w read as 9 values) and its adjoint G^T dU G is GG^T @ dU.
std::vector<float> gg_table(const Plan& p) {
  std::vector<float> gg(static_cast<size_t>(p.A2 * 9));
  for (int i = 0; i < p.A; ++i)
    for (int j = 0; j < p.A; ++j)
      for (int k = 0; k < 3; ++k)
        for (int l = 0; l < 3; ++l) gg[(i * p.A + j) * 9 + k * 3 + l] = static_cast<float>(g_at(p.m, i, k) * g_at(p.m, j, l));
  return gg;
}

// U (A2, O*C) = GG (A2, 9) @ w^T (9, O*C): one small GEMM for all (o, c).
std::vector<float> weight_transform(const Plan& p, const ConvShape& s, const float* w) {
  const int64_t OC = s.O * s.C;
  std::vector<float> u(static_cast<size_t>(p.A2 * OC));
  const std::vector<float> gg = gg_table(p);
  sgemm(1, p.A2, OC, 9, {gg.data(), 0, 9, 1}, {w, 0, 1, 9}, {u.data(), 0, OC});
  return u;
}

// gw (O*C, 9) = dU^T (O*C, A2) @ GG (A2, 9).
void weight_grad_transform(const Plan& p, const ConvShape& s, const float* du, float* gw) {
  const int64_t OC = s.O * s.C;
  const std::vector<float> gg = gg_table(p);
  sgemm(1, OC, 9, p.A2, {du, 0, 1, OC}, {gg.data(), 0, 9, 1}, {gw, 0, 9});
}

// Per-thread scratch that only grows.
float* scratch(int slot, int64_t n) {
  thread_local std::vector<float> bufs[5];
  auto& v = bufs[slot];
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

// V for lane blocks [bl0, bl0 + nbl) into v (rows of length ldv, starting at the chunk's column).
void transform_input(const Plan& p, const ConvShape& s, const float* x, int64_t bl0, int64_t nbl, float* v,
                     int64_t ldv, const WinogradKernels& k) {
  const int64_t CHW = s.C * s.H * s.W, blk = s.C * p.Hl * p.Wl * L;
  float* xl = scratch(0, blk + kSlack);
  for (int64_t j = 0; j < nbl; ++j) {
    const int64_t bl = bl0 + j;
    k.to_lanes(x + bl * L * CHW, CHW, p.nl(s, bl), s.C, s.H, s.W, s.ph, s.pw, p.Hl, p.Wl, xl);
    k.input(p.m, xl, s.C, p.TH, p.TW, v + j * p.tpb, pstride(s.C, ldv), ldv);
  }
}

// dM for lane blocks [bl0, bl0 + nbl) into dm (rows of length ldm).
void transform_grad_output(const Plan& p, const ConvShape& s, const float* gy, int64_t bl0, int64_t nbl, float* dm,
                           int64_t ldm, const WinogradKernels& k) {
  const int64_t OP = s.O * s.OH() * s.OW(), blk = s.O * p.TH * p.m * p.TW * p.m * L;
  float* gyl = scratch(1, blk + kSlack);
  for (int64_t j = 0; j < nbl; ++j) {
    const int64_t bl = bl0 + j;
    k.to_lanes(gy + bl * L * OP, OP, p.nl(s, bl), s.O, s.OH(), s.OW(), 0, 0, p.TH * p.m, p.TW * p.m, gyl);
    k.grad_output(p.m, gyl, s.O, p.TH, p.TW, dm + j * p.tpb, pstride(s.O, ldm), ldm);
  }
}

}  // namespace

int64_t winograd_saved_elems(int m, const ConvShape& s) {
  const Plan p(m, s);
  return p.A2 * pstride(s.C, p.T);
}

namespace {

// U (A2, O, C) -> Ut (A2, C, O): the channel-lane GEMM's right operand stored row-major, so that
// even its few-row products (the small-M path) sum over C in the one FMA chain the image-lane
// GEMM uses (a transposed right operand would be summed in vector lanes there).
void transpose_positions(const float* u, int64_t A2, int64_t O, int64_t C, float* ut) {
  for (int64_t q = 0; q < A2; ++q)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t c = 0; c < C; ++c) ut[(q * C + c) * O + o] = u[(q * O + o) * C + c];
}

// Small batches, channels in the lanes: per image, the padded image channels-last xt (Hl, Wl, C),
// V (A2, T, C) and M (A2, T, O) for its T = TH*TW tiles, and the GEMMs
// M[pos] (T, O) = V[pos] (T, C) @ Ut[pos] (C, O). Only real tiles are computed (image lanes would
// compute 8 lanes for each image).
void forward_channel_lanes(const Plan& p, const ConvShape& s, const float* x, const float* u,
                           const WinogradWeights* pre, const float* b, bool relu, bool pool, float* y,
                           const WinogradKernels& k) {
  const int64_t T = p.TH * p.TW, f = pool ? 2 : 1, YH = s.OH() / f, YW = s.OW() / f;
  const int64_t ldv = pstride(T, s.C), ldm = pstride(T, s.O);
  const float* ut = pre ? pre->ut.data() : nullptr;
  if (!pre) {
    float* t = scratch(1, p.A2 * s.C * s.O);
    transpose_positions(u, p.A2, s.O, s.C, t);
    ut = t;
  }
  float* xt = scratch(0, p.Hl * p.Wl * s.C);
  float* v = scratch(2, p.A2 * ldv);
  float* mm = scratch(3, p.A2 * ldm);
  // Tiles per parallel task: about 4 tiles' transforms of 32 channels is already a few us.
  const int64_t grain = std::max<int64_t>(1, 128 / std::max<int64_t>(s.C, s.O));
  for (int64_t n = 0; n < s.N; ++n) {
    const float* img = x + n * s.C * s.H * s.W;
    parallel_for(0, p.Hl, 4, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        float* row = xt + i * p.Wl * s.C;
        const int64_t si = i - s.ph;
        if (si < 0 || si >= s.H) {
          std::fill_n(row, p.Wl * s.C, 0.0f);
          continue;
        }
        for (int64_t j = 0; j < p.Wl; ++j) {
          const int64_t sj = j - s.pw;
          float* dst = row + j * s.C;
          if (sj < 0 || sj >= s.W)
            std::fill_n(dst, s.C, 0.0f);
          else
            for (int64_t c = 0; c < s.C; ++c) dst[c] = img[(c * s.H + si) * s.W + sj];
        }
      }
    });
    parallel_for(0, T, grain, [&](int64_t t0, int64_t t1) { k.input_cl(p.m, xt, p.Wl, s.C, p.TW, t0, t1, v, ldv); });
    if (pre)  // the positions' products over threads, each on its packed U^T (bitwise as sgemm)
      parallel_for(0, p.A2, 1, [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q)
          sgemm_prepacked(T, {v + q * ldv, 0, s.C, 1}, pre->packed[static_cast<size_t>(q)], {mm + q * ldm, 0, s.O});
      });
    else
      sgemm(p.A2, T, s.O, s.C, {v, ldv, s.C, 1}, {ut, s.C * s.O, s.O, 1}, {mm, ldm, s.O});
    float* yn = y + n * s.O * YH * YW;
    parallel_for(0, T, grain, [&](int64_t t0, int64_t t1) {
      k.output_cl(p.m, pool, mm, ldm, s.O, p.TW, t0, t1, b, relu, yn, YH, YW);
    });
  }
}

// pool: the output transform max-pools 2x2 / stride 2 and y is (N, O, OH/2, OW/2). pre: the
// transformed weights, or null to compute them.
void forward_impl(int m, const ConvShape& s, const float* x, const float* w, const float* b, bool relu, bool pool,
                  float* y, float* v_keep, const WinogradKernels& k, const WinogradWeights* pre) {
  const Plan p(m, s);
  KILN_CHECK(!pre || (pre->m == m && pre->O == s.O && pre->C == s.C), "winograd: prepared weights for F(", pre->m,
             ", 3) ", pre->O, "x", pre->C, " used for F(", m, ", 3) ", s.O, "x", s.C);
  std::vector<float> u_own;
  if (!pre) u_own = weight_transform(p, s, w);
  const float* u = pre ? pre->u.data() : u_own.data();
  if (!v_keep && winograd_channel_lanes(s)) return forward_channel_lanes(p, s, x, u, pre, b, relu, pool, y, k);
  const int64_t f = pool ? 2 : 1, Ho = p.TH * m / f, Wo = p.TW * m / f, YH = s.OH() / f, YW = s.OW() / f;
  const int64_t OP = s.O * YH * YW;
  parallel_for(0, p.chunks(), 1, [&](int64_t lo, int64_t hi) {
    const int64_t tc_max = p.cb * p.tpb;
    float* vs = v_keep ? nullptr : scratch(2, p.A2 * pstride(s.C, tc_max));
    float* mm = scratch(3, p.A2 * pstride(s.O, tc_max) + s.O * Ho * Wo * L + kSlack);
    float* yl = mm + p.A2 * pstride(s.O, tc_max);  // one lane block's output, (O, Ho, Wo, L)
    for (int64_t ch = lo; ch < hi; ++ch) {
      const int64_t bl0 = ch * p.cb, nbl = std::min(p.cb, p.NB - bl0), tc = nbl * p.tpb;
      float* v = v_keep ? v_keep + bl0 * p.tpb : vs;
      const int64_t ldv = v_keep ? p.T : tc;
      transform_input(p, s, x, bl0, nbl, v, ldv, k);
      // M[pos] (O, tc) = U[pos] (O, C) @ V[pos] (C, tc)
      sgemm(p.A2, s.O, tc, s.C, {u, s.O * s.C, s.C, 1}, {v, pstride(s.C, ldv), ldv, 1}, {mm, pstride(s.O, tc), tc});
      for (int64_t j = 0; j < nbl; ++j) {
        const int64_t bl = bl0 + j;
        (pool ? k.output_pool2 : k.output)(m, mm + j * p.tpb, pstride(s.O, tc), tc, s.O, p.TH, p.TW, b, relu, yl);
        k.from_lanes(yl, s.O, Ho, Wo, 0, 0, YH, YW, p.nl(s, bl), y + bl * L * OP, OP);
      }
    }
  });
}

}  // namespace

bool winograd_channel_lanes(const ConvShape& s) {
  return s.N < kWinoLanes / 2 && s.C % kWinoLanes == 0 && s.O % kWinoLanes == 0;
}

std::shared_ptr<const WinogradWeights> winograd_weights(int m, const ConvShape& s, const float* w) {
  auto ww = std::make_shared<WinogradWeights>();
  ww->m = m, ww->O = s.O, ww->C = s.C;
  ww->u = weight_transform(Plan(m, s), s, w);
  const int64_t A2 = (m + 2) * (m + 2);
  ww->ut.resize(ww->u.size());
  transpose_positions(ww->u.data(), A2, s.O, s.C, ww->ut.data());
  for (int64_t q = 0; q < A2; ++q)  // B (C x O) = Ut[q], row-major
    ww->packed.push_back(pack_b_once(s.C, s.O, {ww->ut.data() + q * s.C * s.O, 0, s.O, 1}));
  return ww;
}

void winograd_forward(int m, const ConvShape& s, const float* x, const float* w, const float* b, bool relu, float* y,
                      float* v_keep, const WinogradKernels& k, const WinogradWeights* u) {
  forward_impl(m, s, x, w, b, relu, false, y, v_keep, k, u);
}

void winograd_forward_pool2(int m, const ConvShape& s, const float* x, const float* w, const float* b, bool relu,
                            float* yp, const WinogradKernels& k, const WinogradWeights* u) {
  forward_impl(m, s, x, w, b, relu, true, yp, nullptr, k, u);
}

void winograd_backward(int m, const ConvShape& s, const float* x, const float* w, const float* gy, float* gx,
                       float* gw, const float* v_saved, const WinogradKernels& k) {
  if (!gx && !gw) return;
  const Plan p(m, s);
  const int64_t CHW = s.C * s.H * s.W, OC = s.O * s.C, nch = p.chunks();
  const std::vector<float> u = gx ? weight_transform(p, s, w) : std::vector<float>();
  // Each chunk's weight-gradient partial dU_ch (A2, O, C); summed in chunk order afterwards, so
  // the result does not depend on which thread ran which chunk.
  std::vector<float> du_parts(gw ? static_cast<size_t>(nch * p.A2 * OC) : 0);
  parallel_for(0, nch, 1, [&](int64_t lo, int64_t hi) {
    const int64_t tc_max = p.cb * p.tpb;
    float* dm = scratch(2, p.A2 * pstride(s.O, tc_max));
    float* vs = gw && !v_saved ? scratch(4, p.A2 * pstride(s.C, tc_max)) : nullptr;
    float* dv = gx ? scratch(3, p.A2 * pstride(s.C, tc_max) + s.C * p.Hl * p.Wl * L + kSlack) : nullptr;
    for (int64_t ch = lo; ch < hi; ++ch) {
      const int64_t bl0 = ch * p.cb, nbl = std::min(p.cb, p.NB - bl0), tc = nbl * p.tpb;
      transform_grad_output(p, s, gy, bl0, nbl, dm, tc, k);
      if (gw) {
        const float* v = v_saved ? v_saved + bl0 * p.tpb : vs;
        const int64_t ldv = v_saved ? p.T : tc;
        if (!v_saved) transform_input(p, s, x, bl0, nbl, vs, tc, k);
        // dU_ch[pos] (O, C) = dM[pos] (O, tc) @ V[pos]^T (tc, C)
        sgemm(p.A2, s.O, s.C, tc, {dm, pstride(s.O, tc), tc, 1}, {v, pstride(s.C, ldv), 1, ldv},
              {du_parts.data() + ch * p.A2 * OC, OC, s.C});
      }
      if (!gx) continue;
      // dV[pos] (C, tc) = U[pos]^T (C, O) @ dM[pos] (O, tc)
      float* gxl = dv + p.A2 * pstride(s.C, tc_max);
      sgemm(p.A2, s.C, tc, s.O, {u.data(), OC, 1, s.C}, {dm, pstride(s.O, tc), tc, 1}, {dv, pstride(s.C, tc), tc});
      for (int64_t j = 0; j < nbl; ++j) {
        const int64_t bl = bl0 + j;
        k.grad_input(m, dv + j * p.tpb, pstride(s.C, tc), tc, s.C, p.TH, p.TW, gxl);
        k.from_lanes(gxl, s.C, p.Hl, p.Wl, s.ph, s.pw, s.H, s.W, p.nl(s, bl), gx + bl * L * CHW, CHW);
      }
    }
  });
  if (!gw) return;
  const int64_t n = p.A2 * OC;
  for (int64_t ch = 1; ch < nch; ++ch) {
    const float* src = du_parts.data() + ch * n;
    float* dst = du_parts.data();
    for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
  }
  weight_grad_transform(p, s, du_parts.data(), gw);
}

}  // namespace kiln::ops::cpu
