// One instruction set's build of the fused attention tiles (see flash_attention.h). CMake
// compiles this file once per ISA with KILN_ISA_NS naming the namespace. Everything is written
// with GCC vector extensions sized to the ISA's registers (kW floats), so one source gives SSE2,
// AVX2 and AVX-512 code: small register-blocked tile products (the general sgemm's packing would
// cost more than a 64 x 64 x 32 tile), and softmax rows with a lean exp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kiln/ops/cpu/flash_attention.h"
#include "kiln/ops/cpu/vec_math.h"

#ifndef KILN_ISA_NS
#error "KILN_ISA_NS must name the ISA namespace"
#endif

namespace kiln::ops::cpu::KILN_ISA_NS {

namespace {

// kW floats per vector; kAcc vector accumulators a micro-kernel may keep in registers (the rest
// of the register file holds the B row and the broadcast A element).
#if defined(__AVX512F__)
constexpr int kW = 16;
constexpr int kAcc = 24;
#elif defined(__AVX2__)
constexpr int kW = 8;
constexpr int kAcc = 12;
#else
constexpr int kW = 4;
constexpr int kAcc = 12;
#endif

using Vec = float __attribute__((vector_size(kW * sizeof(float))));
using IVec = int32_t __attribute__((vector_size(kW * sizeof(float))));
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }
// Broadcast as a lane-0 shuffle: GCC emits one vbroadcastss (0 + x would stay a scalar add, and
// a lane-by-lane fill becomes a chain of inserts).
inline Vec splat(float x) {
#if defined(__clang__)
  return Vec{} + x;  // clang has no __builtin_shuffle with a mask vector (fuzz builds use clang)
#else
  Vec v = {x};
  return __builtin_shuffle(v, IVec{});
#endif
}
// A zero GCC cannot see through: it turns loops that store a known zero into memset calls, and
// the call costs more than the few vectors of a tile row.
inline Vec opaque_zero() {
  Vec z = {};
  asm("" : "+x"(z));
  return z;
}
inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// ---------------------------------------------------------------- tile products
// C (M x N, row stride ldc) = or += A (M x K) @ B (K x N, row stride ldb), N a multiple of kW,
// A's element (m, k) at a[m*ars + k*acs] (so a transposed A is just swapped strides). Every C
// element is one chain of multiply-adds over k = 0..K-1 starting from 0 or from the old C, so
// the result does not depend on the register blocking below.

template <int MR, int NV>
inline __attribute__((always_inline)) void micro(int64_t K, const float* a, int64_t ars, int64_t acs,
                                                  const float* b, int64_t ldb, float* c, int64_t ldc, bool acc) {
  Vec s[MR][NV];
#pragma GCC unroll 32
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) s[m][v] = acc ? load(c + m * ldc + v * kW) : Vec{};
  for (int64_t k = 0; k < K; ++k) {
    Vec bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = load(b + k * ldb + v * kW);
#pragma GCC unroll 32
    for (int m = 0; m < MR; ++m) {
      Vec am = splat(a[m * ars + k * acs]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) s[m][v] += am * bv[v];
    }
  }
#pragma GCC unroll 32
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) store(c + m * ldc + v * kW, s[m][v]);
}

// The last M % MR rows of a panel, with a kernel of exactly that height.
template <int NV, int R>
inline void micro_tail(int64_t rows, int64_t K, const float* a, int64_t ars, int64_t acs, const float* b,
                       int64_t ldb, float* c, int64_t ldc, bool acc) {
  if constexpr (R > 0) {
    if (rows == R)
      micro<R, NV>(K, a, ars, acs, b, ldb, c, ldc, acc);
    else
      micro_tail<NV, R - 1>(rows, K, a, ars, acs, b, ldb, c, ldc, acc);
  }
}

// One panel of NV vectors of columns, all M rows.
template <int NV>
void panel(int64_t M, int64_t K, const float* a, int64_t ars, int64_t acs, const float* b, int64_t ldb, float* c,
           int64_t ldc, bool acc) {
  constexpr int MR = kAcc / NV > 16 ? 16 : kAcc / NV;
  int64_t m = 0;
  for (; m + MR <= M; m += MR) micro<MR, NV>(K, a + m * ars, ars, acs, b, ldb, c + m * ldc, ldc, acc);
  micro_tail<NV, MR - 1>(M - m, K, a + m * ars, ars, acs, b, ldb, c + m * ldc, ldc, acc);
}

void tile_gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t ars, int64_t acs, const float* b,
               int64_t ldb, float* c, int64_t ldc, bool acc) {
  const int64_t nv = N / kW;
  int64_t v = 0;
  for (; v + 4 <= nv; v += 4) panel<4>(M, K, a, ars, acs, b + v * kW, ldb, c + v * kW, ldc, acc);
  switch (nv - v) {
    case 3: panel<3>(M, K, a, ars, acs, b + v * kW, ldb, c + v * kW, ldc, acc); break;
    case 2: panel<2>(M, K, a, ars, acs, b + v * kW, ldb, c + v * kW, ldc, acc); break;
    case 1: panel<1>(M, K, a, ars, acs, b + v * kW, ldb, c + v * kW, ldc, acc); break;
    default: break;
  }
}

// ---------------------------------------------------------------- causal tiles
// A tile is query rows i0 .. i0+nr-1 against keys j0 .. j0+nc-1. A tile that crosses the causal
// diagonal is processed in chunks of kChunk rows (or keys), each product stopping at the last key
// its last row sees (or starting at the first row that sees its first key), which skips most of
// the masked half. The skipped terms are products with exact zeros: they would add nothing.

constexpr int64_t kChunk = 16;

struct Tile {
  int64_t i0, nr, j0, nc;
  bool causal;
  // Keys of the tile that row r sees: 0 .. lim(r) - 1.
  int64_t lim(int64_t r) const {
    if (!causal) return nc;
    const int64_t l = i0 + r - j0 + 1;
    return l < 0 ? 0 : (l > nc ? nc : l);
  }
  // The first row that sees key m (nr when none does).
  int64_t first_row(int64_t m) const {
    if (!causal) return 0;
    const int64_t r = j0 + m - i0;
    return r < 0 ? 0 : (r > nr ? nr : r);
  }
  bool crosses() const { return causal && lim(0) < nc; }
};

// S (nr x ncp, row stride lds) = A (nr x K, row stride lda) @ Bt (K x ncp): the scores Q K^T or dP =
// dO V^T. In a crossing tile, only the vectors up to each chunk's last visible key are written.
void tile_scores(const Tile& t, const float* a, int64_t lda, int64_t K, const float* bt, int64_t ldb, float* s,
                 int64_t lds) {
  if (!t.crosses()) return tile_gemm(t.nr, round_up(t.nc, kW), K, a, lda, 1, bt, ldb, s, lds, false);
  for (int64_t r0 = 0; r0 < t.nr; r0 += kChunk) {
    const int64_t r1 = std::min(t.nr, r0 + kChunk), n = round_up(t.lim(r1 - 1), kW);
    if (n > 0) tile_gemm(r1 - r0, n, K, a + r0 * lda, lda, 1, bt, ldb, s + r0 * lds, lds, false);
  }
}

// C (nr x N) += P (nr x nc, masked entries 0) @ B (nc x N): O += P V and dQ += dS K.
void tile_rows_times(const Tile& t, const float* p, int64_t ldp, const float* b, int64_t ldb, int64_t N, float* c,
                     int64_t ldc) {
  if (!t.crosses()) return tile_gemm(t.nr, N, t.nc, p, ldp, 1, b, ldb, c, ldc, true);
  for (int64_t r0 = 0; r0 < t.nr; r0 += kChunk) {
    const int64_t r1 = std::min(t.nr, r0 + kChunk), k = t.lim(r1 - 1);
    if (k > 0) tile_gemm(r1 - r0, N, k, p + r0 * ldp, ldp, 1, b, ldb, c + r0 * ldc, ldc, true);
  }
}

// C (nc x N) += P^T @ B (nr x N): dV += P^T dO and dK += dS^T Q.
void tile_cols_times(const Tile& t, const float* p, int64_t ldp, const float* b, int64_t ldb, int64_t N, float* c,
                     int64_t ldc) {
  if (!t.crosses()) return tile_gemm(t.nc, N, t.nr, p, 1, ldp, b, ldb, c, ldc, true);
  for (int64_t m0 = 0; m0 < t.nc; m0 += kChunk) {
    const int64_t m1 = std::min(t.nc, m0 + kChunk), k0 = t.first_row(m0);
    if (k0 < t.nr)
      tile_gemm(m1 - m0, N, t.nr - k0, p + k0 * ldp + m0, 1, ldp, b + k0 * ldb, ldb, c + m0 * ldc, ldc, true);
  }
}

// ---------------------------------------------------------------- softmax rows

// exp(x) for the softmax's x = score - max <= 0 (or a hair above, from rounding): vm_exp's
// reduction and polynomial without its overflow and subnormal handling, about half the work.
// x is clamped at -87.3, so exp bottoms out at 1.2e-38 instead of 0: nothing next to the row's
// max term, exp(0) = 1. Masked entries never come here (they are set to 0). NaN stays NaN.
inline Vec vexp_nonpos(Vec x) {
  const Vec lo = splat(-87.33654f);
  x = x < lo ? lo : x;
  const Vec n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln2)
  Vec r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  Vec p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const IVec e = (__builtin_convertvector(n, IVec) + 127) << 23;  // 2^n, n in [-126, 1]
  return p * __builtin_bit_cast(Vec, e);
}

inline IVec lane_index() {
  IVec l;
  for (int i = 0; i < kW; ++i) l[i] = i;
  return l;
}

inline float hmax(Vec v) {
  float m = v[0];
  for (int i = 1; i < kW; ++i) m = v[i] > m ? v[i] : m;
  return m;
}
inline float hsum(Vec v) {
  float t = 0.0f;
  for (int i = 0; i < kW; ++i) t += v[i];
  return t;
}

// One row of the forward's online softmax. s holds raw scores, lim of them visible; m and l are
// the row's running max (of scale * score) and running sum of exp(scale * score - m). Rewrites
// s as p = exp(scale * s - m_new), zeros from lim to ncp, and returns exp(m_old - m_new), the
// factor the output accumulated so far must be rescaled by.
float online_softmax_row(float* s, int64_t lim, int64_t ncp, float scale, float& m, float& l) {
  const int64_t full = lim / kW * kW, rem = lim - full;
  const IVec lanes = lane_index();
  if (lim == 0) {  // nothing visible in this tile (never the first tile of a row)
    for (int64_t c = 0; c < ncp; c += kW) store(s + c, opaque_zero());
    return 1.0f;
  }
  Vec mv = splat(kNegInf);
  for (int64_t c = 0; c < full; c += kW) {
    const Vec x = load(s + c);
    mv = x > mv ? x : mv;
  }
  if (rem) {
    const Vec x = load(s + full);
    mv = lanes < static_cast<int32_t>(rem) && x > mv ? x : mv;
  }
  const float mx = hmax(mv) * scale, m_new = m > mx ? m : mx;
  const float alpha = vm_exp(m - m_new);  // 0 on a row's first tile, where m = -inf
  const Vec sc = splat(scale), mn = splat(m_new);
  Vec acc{};
  int64_t c = 0;
  for (; c < full; c += kW) {
    const Vec p = vexp_nonpos(load(s + c) * sc - mn);
    store(s + c, p);
    acc += p;
  }
  if (rem) {
    Vec p = vexp_nonpos(load(s + c) * sc - mn);
    p = lanes < static_cast<int32_t>(rem) ? p : Vec{};
    store(s + c, p);
    acc += p;
    c += kW;
  }
  for (; c < ncp; c += kW) store(s + c, opaque_zero());
  l = l * alpha + hsum(acc);
  m = m_new;
  return alpha;
}

// Backward rows: p = exp(scale * s - lse) over the lim visible entries, zeros up to ncp.
void probs_row(float* s, int64_t lim, int64_t ncp, float scale, float lse) {
  const int64_t full = lim / kW * kW, rem = lim - full;
  const Vec sc = splat(scale), l = splat(lse);
  int64_t c = 0;
  for (; c < full; c += kW) store(s + c, vexp_nonpos(load(s + c) * sc - l));
  if (rem) {
    const Vec p = vexp_nonpos(load(s + c) * sc - l);
    store(s + c, lane_index() < static_cast<int32_t>(rem) ? p : Vec{});
    c += kW;
  }
  for (; c < ncp; c += kW) store(s + c, opaque_zero());
}

// dS = scale * P * (dP - D) over the lim visible entries of a row (dp in place), zeros up to ncp.
void dscores_row(const float* p, float* dp, int64_t lim, int64_t ncp, float scale, float drow) {
  const int64_t full = lim / kW * kW, rem = lim - full;
  const Vec sc = splat(scale), dd = splat(drow);
  int64_t c = 0;
  for (; c < full; c += kW) store(dp + c, load(p + c) * (load(dp + c) - dd) * sc);
  if (rem) {
    const Vec v = load(p + c) * (load(dp + c) - dd) * sc;
    store(dp + c, lane_index() < static_cast<int32_t>(rem) ? v : Vec{});
    c += kW;
  }
  for (; c < ncp; c += kW) store(dp + c, opaque_zero());
}

// ---------------------------------------------------------------- per-(b, h) operands
// The tile products want their B operand in dense rows of whole vectors (zero padding adds
// nothing) and the score products want K and V transposed. These copies are made once per (b, h)
// and work-item range: O(T*D) against O(T*S*D) arithmetic.

inline const float* at(const AttnIn& x, int64_t bh, int64_t H) { return x.data + (bh / H) * x.sb + (bh % H) * x.sh; }
inline float* at(const AttnOut& x, int64_t bh, int64_t H) { return x.data + (bh / H) * x.sb + (bh % H) * x.sh; }

// A row-major operand: row r at p + r * ld.
struct View {
  const float* p;
  int64_t ld;
};

// K^T or V^T in key blocks: block j (keys j*bk ..) is a dense (cols x bk) panel at dst + j*cols*bk,
// dst[j*cols*bk + c*bk + r] = src[(j*bk + r)*sr + c], keys past the end 0. One dense panel per
// block rather than one (cols x S) matrix: rows S floats apart would all fall in a few cache sets
// when S is a power of two, and the score products read a block's panel over and over.
// 4 x 4 sub-blocks go through registers (two rounds of 128-bit shuffles, on every ISA): scalar
// element moves made this copy about half as costly as the score product it feeds at T = 128.
using V4 = float __attribute__((vector_size(16)));

void transpose_blocked(const float* src, int64_t sr, int64_t rows, int64_t cols, int64_t bk, float* dst) {
  for (int64_t j0 = 0; j0 < rows; j0 += bk) {
    float* panel = dst + j0 * cols;
    const float* base = src + j0 * sr;
    const int64_t n = std::min(bk, rows - j0), n4 = n / 4 * 4, c4 = cols / 4 * 4;
    for (int64_t r = 0; r < n4; r += 4) {
      for (int64_t c = 0; c < c4; c += 4) {
        V4 x0, x1, x2, x3;
        std::memcpy(&x0, base + r * sr + c, 16);
        std::memcpy(&x1, base + (r + 1) * sr + c, 16);
        std::memcpy(&x2, base + (r + 2) * sr + c, 16);
        std::memcpy(&x3, base + (r + 3) * sr + c, 16);
        const V4 t0 = __builtin_shufflevector(x0, x1, 0, 4, 1, 5), t1 = __builtin_shufflevector(x0, x1, 2, 6, 3, 7);
        const V4 t2 = __builtin_shufflevector(x2, x3, 0, 4, 1, 5), t3 = __builtin_shufflevector(x2, x3, 2, 6, 3, 7);
        const V4 y0 = __builtin_shufflevector(t0, t2, 0, 1, 4, 5), y1 = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
        const V4 y2 = __builtin_shufflevector(t1, t3, 0, 1, 4, 5), y3 = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
        std::memcpy(panel + c * bk + r, &y0, 16);
        std::memcpy(panel + (c + 1) * bk + r, &y1, 16);
        std::memcpy(panel + (c + 2) * bk + r, &y2, 16);
        std::memcpy(panel + (c + 3) * bk + r, &y3, 16);
      }
      for (int64_t c = c4; c < cols; ++c)
        for (int64_t i = 0; i < 4; ++i) panel[c * bk + r + i] = base[(r + i) * sr + c];
    }
    for (int64_t c = 0; c < cols; ++c) {
      for (int64_t r = n4; r < n; ++r) panel[c * bk + r] = base[r * sr + c];
      for (int64_t r = n; r < bk; ++r) panel[c * bk + r] = 0.0f;
    }
  }
}

// One lazily built operand of the current (b, h).
struct Slot {
  bool ready = false;
  View v{nullptr, 0};
  std::vector<float> buf;
};

// Copies `cols` floats (whole vectors, then a scalar tail) and zero-pads to `ld`, inline: GCC
// would turn a plain copy loop into a memcpy call, which costs more than a 32-float row.
inline void copy_row(float* dst, const float* src, int64_t cols, int64_t ld) {
  int64_t c = 0;
  for (; c + kW <= cols; c += kW) {
    Vec x = load(src + c);
    asm("" : "+x"(x));
    store(dst + c, x);
  }
  for (; c < cols; ++c) dst[c] = src[c];
  for (; c < ld; ++c) dst[c] = 0.0f;
}

// (rows x cols) at src with row stride sr, copied to dense rows of whole vectors. Always a copy,
// even when the source rows are whole vectors already: the tile products sweep these rows again
// for every block of output rows, and the head-split layout puts them H*D floats apart, which
// maps a 64-row block into a quarter of L1's sets.
View row_operand(Slot& s, const float* src, int64_t sr, int64_t rows, int64_t cols) {
  if (s.ready) return s.v;
  s.ready = true;
  const int64_t ld = round_up(cols, kW);
  s.buf.resize(static_cast<size_t>(rows * ld));
  for (int64_t r = 0; r < rows; ++r) copy_row(s.buf.data() + r * ld, src + r * sr, cols, ld);
  return s.v = {s.buf.data(), ld};
}

// What one thread keeps about the (b, h) pair it is working on, reused by consecutive work items
// of the same pair.
struct BhCache {
  int64_t bh = -1;
  Slot kt, vt, k, v, q, dout, drow;
  int64_t Dp = 0, Dvp = 0;  // D and Dv rounded up to whole vectors

  explicit BhCache(const AttnDims& d) : Dp(round_up(d.D, kW)), Dvp(round_up(d.Dv, kW)) {}
  void use(int64_t b) {
    if (b == bh) return;
    bh = b;
    for (Slot* s : {&kt, &vt, &k, &v, &q, &dout, &drow}) s->ready = false;
  }
  // K^T as (D x block_k) panels, one per key block; the panel of key j0 starts at j0 * D.
  const float* Kt(const AttnDims& d, const AttnIn& x) { return transposed(kt, d, x, d.D); }
  const float* Vt(const AttnDims& d, const AttnIn& x) { return transposed(vt, d, x, d.Dv); }
  View K(const AttnDims& d, const AttnIn& x) { return row_operand(k, at(x, bh, d.H), x.sr, d.S, d.D); }
  View V(const AttnDims& d, const AttnIn& x) { return row_operand(v, at(x, bh, d.H), x.sr, d.S, d.Dv); }
  View Q(const AttnDims& d, const AttnIn& x) { return row_operand(q, at(x, bh, d.H), x.sr, d.T, d.D); }
  View dO(const AttnDims& d, const AttnIn& x) { return row_operand(dout, at(x, bh, d.H), x.sr, d.T, d.Dv); }
  // rowsum(dO * O) (T): the softmax backward's <dP, P> per row, since sum_s P dP = dO . O.
  const float* Drow(const AttnDims& d, const AttnIn& g, const AttnIn& o) {
    if (!drow.ready) {
      drow.ready = true;
      drow.buf.resize(static_cast<size_t>(d.T));
      const View gv = dO(d, g);
      const float* op = at(o, bh, d.H);
      for (int64_t t = 0; t < d.T; ++t) {
        const float* gr = gv.p + t * gv.ld;
        const float* orow = op + t * o.sr;
        Vec acc{};
        int64_t c = 0;
        for (; c + kW <= d.Dv; c += kW) acc += load(gr + c) * load(orow + c);
        float sum = hsum(acc);
        for (; c < d.Dv; ++c) sum += gr[c] * orow[c];
        drow.buf[t] = sum;
      }
    }
    return drow.buf.data();
  }

 private:
  const float* transposed(Slot& s, const AttnDims& d, const AttnIn& x, int64_t cols) {
    if (!s.ready) {
      s.ready = true;
      s.buf.resize(static_cast<size_t>(round_up(d.S, d.block_k) * cols));
      transpose_blocked(at(x, bh, d.H), x.sr, d.S, cols, d.block_k, s.buf.data());
    }
    return s.buf.data();
  }
};

// Rows an output gradient accumulates in: a dense zeroed buffer of whole-vector rows, copied out
// by finish() (for the same reason as row_operand's copies).
struct Accum {
  float* p;
  int64_t ld;
};

Accum start_accum(int64_t rows, int64_t cols, std::vector<float>& buf) {
  const int64_t ld = round_up(cols, kW);
  if (static_cast<int64_t>(buf.size()) < rows * ld) buf.resize(static_cast<size_t>(rows * ld));
  std::fill(buf.begin(), buf.begin() + rows * ld, 0.0f);
  return {buf.data(), ld};
}

void finish(const Accum& acc, float* out, int64_t sr, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) copy_row(out + r * sr, acc.p + r * acc.ld, cols, cols);
}

// ---------------------------------------------------------------- forward

void forward(const FlashForwardArgs& a, int64_t lo, int64_t hi) {
  const AttnDims& d = a.dims;
  const int64_t Bq = d.block_q, Bk = d.block_k, nq = (d.T + Bq - 1) / Bq;
  BhCache cache(d);
  const int64_t Dvp = cache.Dvp;
  std::vector<float> sbuf(static_cast<size_t>(Bq * Bk)), obuf(static_cast<size_t>(Bq * Dvp));
  std::vector<float> mrow(static_cast<size_t>(Bq)), lrow(static_cast<size_t>(Bq));
  for (int64_t item = lo; item < hi; ++item) {
    const int64_t bh = item / nq, i0 = (item % nq) * Bq, nr = std::min(Bq, d.T - i0);
    cache.use(bh);
    const float* kt = cache.Kt(d, a.k);
    const View vv = cache.V(d, a.v);
    const View qv = cache.Q(d, a.q);
    const float* q = qv.p + i0 * qv.ld;
    float* s = sbuf.data();
    float* o = obuf.data();
    std::fill(obuf.begin(), obuf.begin() + nr * Dvp, 0.0f);
    std::fill(mrow.begin(), mrow.end(), kNegInf);
    std::fill(lrow.begin(), lrow.end(), 0.0f);
    const int64_t kend = d.causal ? std::min(d.S, i0 + nr) : d.S;  // keys any row of the block sees
    for (int64_t j0 = 0; j0 < kend; j0 += Bk) {
      const Tile t{i0, nr, j0, std::min(Bk, d.S - j0), d.causal};
      const int64_t ncp = round_up(t.nc, kW);
      tile_scores(t, q, qv.ld, d.D, kt + j0 * d.D, Bk, s, Bk);  // S = Q K^T
      // Online softmax: when a row's max grows, its sum and the output accumulated so far are
      // rescaled by exp(m_old - m_new).
      for (int64_t r = 0; r < nr; ++r) {
        const float alpha = online_softmax_row(s + r * Bk, t.lim(r), ncp, d.scale, mrow[r], lrow[r]);
        float* orow = o + r * Dvp;
        if (alpha != 1.0f)
          for (int64_t c = 0; c < Dvp; ++c) orow[c] *= alpha;
      }
      tile_rows_times(t, s, Bk, vv.p + j0 * vv.ld, vv.ld, Dvp, o, Dvp);  // O += P V
    }
    float* out = at(a.o, bh, d.H) + i0 * a.o.sr;
    float* lse = a.lse + bh * d.T + i0;
    for (int64_t r = 0; r < nr; ++r) {
      const float inv = 1.0f / lrow[r];
      for (int64_t c = 0; c < d.Dv; ++c) out[r * a.o.sr + c] = o[r * Dvp + c] * inv;
      lse[r] = mrow[r] + std::log(lrow[r]);
    }
  }
}

// ---------------------------------------------------------------- backward

struct BackwardWork {
  std::vector<float> p, ds, dk, dv, dq;
};

// The probabilities P = exp(scale * Q K^T - L) of tile t into p (nr x Bk), and, when with_ds,
// dS = scale * P * (dO V^T - Drow) into ds. Not inlined, so the fused and two-sweep backward run
// literally the same instructions and agree bit for bit.
__attribute__((noinline)) void tile_p_ds(const FlashBackwardArgs& a, BhCache& cache, int64_t bh, const Tile& t,
                                         bool with_ds, float* p, float* ds) {
  const AttnDims& d = a.dims;
  const int64_t Bk = d.block_k, ncp = round_up(t.nc, kW);
  const float* lse = a.lse + bh * d.T + t.i0;
  const View q = cache.Q(d, a.q);
  tile_scores(t, q.p + t.i0 * q.ld, q.ld, d.D, cache.Kt(d, a.k) + t.j0 * d.D, Bk, p, Bk);
  for (int64_t r = 0; r < t.nr; ++r) probs_row(p + r * Bk, t.lim(r), ncp, d.scale, lse[r]);
  if (!with_ds) return;
  const View g = cache.dO(d, a.dout);
  tile_scores(t, g.p + t.i0 * g.ld, g.ld, d.Dv, cache.Vt(d, a.v) + t.j0 * d.Dv, Bk, ds, Bk);  // dP = dO V^T
  const float* drow = cache.Drow(d, a.dout, a.o) + t.i0;
  for (int64_t r = 0; r < t.nr; ++r) dscores_row(p + r * Bk, ds + r * Bk, t.lim(r), ncp, d.scale, drow[r]);
}

void ensure(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

// dK and dV rows of key block j0, summed over query blocks in ascending order; with dq (T rows),
// also adds each tile's dS K into the dQ rows it touches.
void key_block(const FlashBackwardArgs& a, BhCache& cache, BackwardWork& w, int64_t bh, int64_t j0,
               const Accum* dq) {
  const AttnDims& d = a.dims;
  const int64_t Bq = d.block_q, Bk = d.block_k, nc = std::min(Bk, d.S - j0);
  const bool need_dk = a.dk.data != nullptr, need_dv = a.dv.data != nullptr;
  ensure(w.p, Bq * Bk);
  ensure(w.ds, Bq * Bk);
  float* dk_out = need_dk ? at(a.dk, bh, d.H) + j0 * a.dk.sr : nullptr;
  float* dv_out = need_dv ? at(a.dv, bh, d.H) + j0 * a.dv.sr : nullptr;
  const Accum dk = need_dk ? start_accum(nc, d.D, w.dk) : Accum{};
  const Accum dv = need_dv ? start_accum(nc, d.Dv, w.dv) : Accum{};
  const View q = need_dk ? cache.Q(d, a.q) : View{}, g = need_dv ? cache.dO(d, a.dout) : View{};
  const View k = dq ? cache.K(d, a.k) : View{};
  // Causal: the first query block holding a row >= j0; earlier rows see none of these keys.
  const int64_t istart = d.causal ? j0 / Bq * Bq : 0;
  const int64_t iend = d.causal && j0 >= d.T ? istart : d.T;
  for (int64_t i0 = istart; i0 < iend; i0 += Bq) {
    const Tile t{i0, std::min(Bq, d.T - i0), j0, nc, d.causal};
    tile_p_ds(a, cache, bh, t, need_dk || dq, w.p.data(), w.ds.data());
    if (need_dv) tile_cols_times(t, w.p.data(), Bk, g.p + i0 * g.ld, g.ld, cache.Dvp, dv.p, dv.ld);  // dV += P^T dO
    if (need_dk) tile_cols_times(t, w.ds.data(), Bk, q.p + i0 * q.ld, q.ld, cache.Dp, dk.p, dk.ld);  // dK += dS^T Q
    if (dq)
      tile_rows_times(t, w.ds.data(), Bk, k.p + j0 * k.ld, k.ld, cache.Dp, dq->p + i0 * dq->ld, dq->ld);  // dQ += dS K
  }
  if (need_dk) finish(dk, dk_out, a.dk.sr, nc, d.D);
  if (need_dv) finish(dv, dv_out, a.dv.sr, nc, d.Dv);
}

void backward_fused(const FlashBackwardArgs& a, int64_t lo, int64_t hi) {
  const AttnDims& d = a.dims;
  BhCache cache(d);
  BackwardWork w;
  for (int64_t bh = lo; bh < hi; ++bh) {
    cache.use(bh);
    float* dq_out = a.dq.data ? at(a.dq, bh, d.H) : nullptr;
    const Accum dq = dq_out ? start_accum(d.T, d.D, w.dq) : Accum{};
    for (int64_t j0 = 0; j0 < d.S; j0 += d.block_k) key_block(a, cache, w, bh, j0, dq_out ? &dq : nullptr);
    if (dq_out) finish(dq, dq_out, a.dq.sr, d.T, d.D);
  }
}

void backward_kv(const FlashBackwardArgs& a, int64_t lo, int64_t hi) {
  const AttnDims& d = a.dims;
  if (!a.dk.data && !a.dv.data) return;
  const int64_t nk = (d.S + d.block_k - 1) / d.block_k;
  BhCache cache(d);
  BackwardWork w;
  for (int64_t item = lo; item < hi; ++item) {
    cache.use(item / nk);
    key_block(a, cache, w, item / nk, item % nk * d.block_k, nullptr);
  }
}

void backward_q(const FlashBackwardArgs& a, int64_t lo, int64_t hi) {
  const AttnDims& d = a.dims;
  if (!a.dq.data) return;
  const int64_t Bq = d.block_q, Bk = d.block_k, nq = (d.T + Bq - 1) / Bq;
  BhCache cache(d);
  BackwardWork w;
  ensure(w.p, Bq * Bk);
  ensure(w.ds, Bq * Bk);
  for (int64_t item = lo; item < hi; ++item) {
    const int64_t bh = item / nq, i0 = item % nq * Bq, nr = std::min(Bq, d.T - i0);
    cache.use(bh);
    const View k = cache.K(d, a.k);
    float* dq_out = at(a.dq, bh, d.H) + i0 * a.dq.sr;
    const Accum dq = start_accum(nr, d.D, w.dq);
    const int64_t kend = d.causal ? std::min(d.S, i0 + nr) : d.S;
    for (int64_t j0 = 0; j0 < kend; j0 += Bk) {
      const Tile t{i0, nr, j0, std::min(Bk, d.S - j0), d.causal};
      tile_p_ds(a, cache, bh, t, true, w.p.data(), w.ds.data());
      tile_rows_times(t, w.ds.data(), Bk, k.p + j0 * k.ld, k.ld, cache.Dp, dq.p, dq.ld);
    }
    finish(dq, dq_out, a.dq.sr, nr, d.D);
  }
}

}  // namespace

extern const FlashAttentionKernels kFlashAttentionKernels;
const FlashAttentionKernels kFlashAttentionKernels = {KILN_ISA_NAME, forward, backward_fused, backward_kv,
                                                      backward_q};

}  // namespace kiln::ops::cpu::KILN_ISA_NS
