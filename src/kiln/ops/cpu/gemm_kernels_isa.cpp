// One instruction set's build of the GEMM micro-kernels and packing routines (gemm_kernel.h).
// Compiled three times (portable, AVX2+FMA, AVX-512) with KILN_ISA_NS naming the namespace.
// Each kernel keeps its MR x NR tile of C in MR * NR/W vector registers for the whole K loop and
// adds one rank-1 update per k with fused multiply-adds: acc[i][j] = fma(a[k][i], b[k][j], acc),
// k ascending. That order is the same for every blocking, so tuning never changes results.
#include <algorithm>
#include <cstring>

#include "kiln/ops/cpu/gemm_kernel.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#ifndef KILN_ISA_NS
#error "KILN_ISA_NS must name the ISA namespace"
#endif

namespace kiln::ops::cpu::KILN_ISA_NS {

namespace {

#if defined(KILN_GEMM_EMULATE_AVX512)
// Test builds only (tests/ops/gemm_avx512_emu.cpp): 16 lanes from GCC vector extensions, so the
// AVX-512 kernel list (its tile shapes, packing widths and edges) runs on machines without it.
struct Vec {
  using T = float __attribute__((vector_size(64)));
  static constexpr int W = 16;
  static T load(const float* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(float* p, T v) { std::memcpy(p, &v, sizeof v); }
  static T set1(float x) { return T{} + x; }
  static T zero() { return T{}; }
  static T fma(T a, T b, T c) { return a * b + c; }
  static T add(T a, T b) { return a + b; }
  static T max(T a, T b) { return a > b ? a : b; }
};
#elif defined(__AVX512F__)
struct Vec {
  using T = __m512;
  static constexpr int W = 16;
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T set1(float x) { return _mm512_set1_ps(x); }
  static T zero() { return _mm512_setzero_ps(); }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  // maskz form: GCC 12 warns (falsely) about _mm512_max_ps's undefined pass-through operand.
  static T max(T a, T b) { return _mm512_maskz_max_ps(static_cast<__mmask16>(0xFFFF), a, b); }
};
#elif defined(__AVX2__)
struct Vec {
  using T = __m256;
  static constexpr int W = 8;
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static T set1(float x) { return _mm256_set1_ps(x); }
  static T zero() { return _mm256_setzero_ps(); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T max(T a, T b) { return _mm256_max_ps(a, b); }
};
#else
// Portable: GCC vector extensions (SSE on x86-64, NEON elsewhere), multiply then add.
struct Vec {
  using T = float __attribute__((vector_size(16)));
  static constexpr int W = 4;
  static T load(const float* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(float* p, T v) { std::memcpy(p, &v, sizeof v); }
  static T set1(float x) { return T{x, x, x, x}; }
  static T zero() { return T{0, 0, 0, 0}; }
  static T fma(T a, T b, T c) { return a * b + c; }
  static T add(T a, T b) { return a + b; }
  static T max(T a, T b) { return a > b ? a : b; }
};
#endif

using V = Vec::T;
constexpr int W = Vec::W;

// A scalar multiply-add that rounds like this build's vector one (fused where the ISA fuses).
inline float fmaf_isa(float a, float b, float c) {
#if defined(__FMA__)
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

template <int MR, int NV>
void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* __restrict c,
                  int64_t ldc, const TileArgs& t) {
  constexpr int NR = NV * W;
  V acc[MR][NV];
  if (t.load_c) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[i][j] = Vec::load(c + i * ldc + j * W);
  } else {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[i][j] = Vec::zero();
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    V bv[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) bv[j] = Vec::load(b + j * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      V av = Vec::set1(a[i]);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[i][j] = Vec::fma(av, bv[j], acc[i][j]);
    }
    a += MR;
    b += NR;
  }
  if (t.final) {
    if (t.bias) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j)
          acc[i][j] = Vec::add(acc[i][j], t.bias_per_row ? Vec::set1(t.bias[i]) : Vec::load(t.bias + j * W));
    }
    if (t.relu) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) acc[i][j] = Vec::max(acc[i][j], Vec::zero());
    }
    if (t.residual) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) acc[i][j] = Vec::add(acc[i][j], Vec::load(t.residual + i * t.ldr + j * W));
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) Vec::store(c + i * ldc + j * W, acc[i][j]);
}

#if defined(__AVX2__)
// dst[r * ldd + c] = src[c * lds + r] for an 8 x 8 block: 8 loads, 24 shuffles, 8 stores.
inline void transpose8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r0 = _mm256_loadu_ps(src + 0 * lds), r1 = _mm256_loadu_ps(src + 1 * lds);
  __m256 r2 = _mm256_loadu_ps(src + 2 * lds), r3 = _mm256_loadu_ps(src + 3 * lds);
  __m256 r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds);
  __m256 r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

template <int MR>
void pack_a(const float* a, int64_t rs, int64_t cs, int64_t mc, int64_t kc, float alpha, float* __restrict dst) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR) {
    int64_t rows = mc - i0 < MR ? mc - i0 : MR;
    const float* src = a + i0 * rs;
    if (rows == MR && rs == 1) {
      // Column-major A (a transposed operand): MR consecutive values per k.
      for (int64_t k = 0; k < kc; ++k)
        for (int i = 0; i < MR; ++i) dst[k * MR + i] = alpha * src[k * cs + i];
    } else if (rows == MR && cs == 1) {
      int64_t k0 = 0;
#if defined(__AVX2__)
      if constexpr (MR <= 8) {
        // Row-major A: transpose MR rows x 8 k at a time in registers. Each k's MR values are
        // stored as a full 8-float vector at dst + k*MR; the next k's store overwrites the
        // surplus (the buffer has slack at its end for the last one).
        const __m256 va = _mm256_set1_ps(alpha);
        alignas(32) float t[8 * 8];
        for (; k0 + 8 <= kc; k0 += 8) {
          __m256 r[8];
          for (int i = 0; i < 8; ++i)
            r[i] = i < MR ? _mm256_mul_ps(va, _mm256_loadu_ps(src + i * rs + k0)) : _mm256_setzero_ps();
          for (int i = 0; i < 8; ++i) _mm256_store_ps(t + i * 8, r[i]);
          transpose8x8(t, 8, t, 8);
          for (int kk = 0; kk < 8; ++kk) _mm256_storeu_ps(dst + (k0 + kk) * MR, _mm256_load_ps(t + kk * 8));
        }
      }
#endif
      for (int i = 0; i < MR; ++i) {
        const float* row = src + i * rs;
        for (int64_t k = k0; k < kc; ++k) dst[k * MR + i] = alpha * row[k];
      }
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t i = 0; i < rows; ++i) dst[k * MR + i] = alpha * src[i * rs + k * cs];
        for (int64_t i = rows; i < MR; ++i) dst[k * MR + i] = 0.0f;
      }
    }
    dst += kc * MR;
  }
}


template <int NR>
void pack_b(const float* b, int64_t rs, int64_t cs, int64_t kc, int64_t nc, int64_t p0, int64_t p1,
            float* __restrict dst) {
  const int64_t full_end = std::min(p1, nc / NR);  // panels [p0, full_end) have all NR columns
  if (cs == 1 && p0 < full_end) {
    // Row-major B: walk each row of the block once, in order, dealing NR-wide pieces to the
    // panels (reading panel by panel instead would stride a whole row per 64 bytes).
    for (int64_t k = 0; k < kc; ++k) {
      const float* row = b + k * rs;
      for (int64_t p = p0; p < full_end; ++p) std::memcpy(dst + p * kc * NR + k * NR, row + p * NR, NR * sizeof(float));
    }
    p0 = full_end;
  }
  for (int64_t p = p0; p < p1; ++p) {
    int64_t j0 = p * NR;
    int64_t cols = nc - j0 < NR ? nc - j0 : NR;
    float* out = dst + p * kc * NR;
    const float* src = b + j0 * cs;
    if (cols == NR && rs == 1) {
      // B stored transposed (a Linear weight (N, K)): a transposition, 8 x 8 at a time in
      // registers where the ISA allows, then the remainder column by column.
      int64_t k0 = 0;
#if defined(__AVX2__)
      if constexpr (NR % 8 == 0) {
        for (; k0 + 8 <= kc; k0 += 8)
          for (int j = 0; j < NR; j += 8) transpose8x8(src + j * cs + k0, cs, out + k0 * NR + j, NR);
      }
#endif
      for (int j = 0; j < NR; ++j) {
        const float* col = src + j * cs;
        for (int64_t k = k0; k < kc; ++k) out[k * NR + j] = col[k];
      }
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        for (int64_t j = 0; j < cols; ++j) out[k * NR + j] = src[k * rs + j * cs];
        for (int64_t j = cols; j < NR; ++j) out[k * NR + j] = 0.0f;
      }
    }
  }
}

void small_nn(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda_row, int64_t lda_col, float alpha,
              const float* __restrict b, int64_t ldb, float* __restrict c, int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < M; ++i) {
    float* crow = c + i * ldc;
    const float* arow = a + i * lda_row;
    if (!accumulate) std::memset(crow, 0, N * sizeof(float));
    // Columns in chunks that stay in registers across the whole K loop.
    constexpr int64_t kChunk = 4 * W;
    int64_t j0 = 0;
    for (; j0 + kChunk <= N; j0 += kChunk) {
      V acc[4];
      for (int v = 0; v < 4; ++v) acc[v] = Vec::load(crow + j0 + v * W);
      for (int64_t k = 0; k < K; ++k) {
        V av = Vec::set1(alpha * arow[k * lda_col]);
        const float* brow = b + k * ldb + j0;
        for (int v = 0; v < 4; ++v) acc[v] = Vec::fma(av, Vec::load(brow + v * W), acc[v]);
      }
      for (int v = 0; v < 4; ++v) Vec::store(crow + j0 + v * W, acc[v]);
    }
    for (int64_t k = 0; k < K && j0 < N; ++k) {
      const float av = alpha * arow[k * lda_col];
      const float* brow = b + k * ldb;
      for (int64_t j = j0; j < N; ++j) crow[j] = fmaf_isa(av, brow[j], crow[j]);
    }
  }
}

void small_nt(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, float alpha, const float* __restrict b,
              int64_t ldb, float* __restrict c, int64_t ldc, bool accumulate) {
  for (int64_t j = 0; j < N; ++j) {
    const float* w = b + j * ldb;
    for (int64_t i = 0; i < M; ++i) {
      const float* arow = a + i * lda;
      V acc[4] = {Vec::zero(), Vec::zero(), Vec::zero(), Vec::zero()};
      int64_t k = 0;
      for (; k + 4 * W <= K; k += 4 * W)
        for (int v = 0; v < 4; ++v)
          acc[v] = Vec::fma(Vec::load(arow + k + v * W), Vec::load(w + k + v * W), acc[v]);
      V s = Vec::add(Vec::add(acc[0], acc[1]), Vec::add(acc[2], acc[3]));
      alignas(64) float lanes[W];
      Vec::store(lanes, s);
      float sum = 0;
      for (int l = 0; l < W; ++l) sum += lanes[l];
      for (; k < K; ++k) sum = fmaf_isa(arow[k], w[k], sum);
      c[i * ldc + j] = alpha * sum + (accumulate ? c[i * ldc + j] : 0.0f);
    }
  }
}

template <int MR, int NV>
constexpr GemmMicroKernel make(std::string_view name) {
  return GemmMicroKernel{name, MR, NV * W, &micro_kernel<MR, NV>, &pack_a<MR>, &pack_b<NV * W>};
}

}  // namespace

// kernels[0] is the default. Register budget: MR * NV accumulators + NV B vectors + 1 broadcast
// must fit the register file (16 ymm, 32 zmm): a 3x32 AVX2 tile (12 + 4 + 1) spilled and ran at
// half speed. Measured on a 2-core Zen 3, 1 thread, 1024^3: 4x24 90 GFLOP/s, 6x16 87, 8x8 70.
#if defined(__AVX512F__) || defined(KILN_GEMM_EMULATE_AVX512)
extern const GemmKernelSet kGemmKernels{
    KILN_ISA_NAME, 5,
    {make<12, 2>("12x32"), make<6, 2>("6x32"), make<14, 2>("14x32"), make<8, 3>("8x48"), make<4, 4>("4x64")},
    &small_nn, &small_nt};
#elif defined(__AVX2__)
extern const GemmKernelSet kGemmKernels{
    KILN_ISA_NAME, 4, {make<4, 3>("4x24"), make<6, 2>("6x16"), make<5, 2>("5x16"), make<8, 1>("8x8")},
    &small_nn, &small_nt};
#else
extern const GemmKernelSet kGemmKernels{
    KILN_ISA_NAME, 3, {make<6, 2>("6x8"), make<4, 3>("4x12"), make<8, 1>("8x4")}, &small_nn, &small_nt};
#endif

}  // namespace kiln::ops::cpu::KILN_ISA_NS
