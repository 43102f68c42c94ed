// The pieces of Kiln's GEMM that are compiled once per instruction set (gemm_kernels_isa.cpp):
// register-blocked micro-kernels and the packing routines that feed them. The driver
// (gemm.cpp) does the cache blocking and threading and picks a micro-kernel by index.
//
// Packed layouts (BLIS): an A block of mc x kc is stored as ceil(mc/MR) panels, each kc x MR
// (for every k, MR consecutive row values); a B block of kc x nc as ceil(nc/NR) panels, each
// kc x NR. Rows/columns past the matrix edge are zero in the panels, so the micro-kernel always
// computes a full MR x NR tile; the driver routes edge tiles through a scratch tile.
#pragma once

#include <cstdint>
#include <string_view>

namespace kiln::ops::cpu {

// What the micro-kernel does with its MR x NR tile of C.
struct TileArgs {
  bool load_c;                 // continue the running sums held in C (else start from zero)
  bool final;                  // last K block: apply bias / ReLU / residual before storing
  const float* bias;           // already offset to this tile; nullptr for none
  bool bias_per_row;           // bias[i] per row instead of bias[j] per column
  bool relu;
  const float* residual;       // already offset to this tile; nullptr for none
  int64_t ldr;                 // residual row stride
};

using MicroKernelFn = void (*)(int64_t kc, const float* a_panel, const float* b_panel, float* c, int64_t ldc,
                               const TileArgs& t);
// Packs rows [0, mc) x cols [0, kc) of A (element (i, k) at a[i*rs + k*cs]) times alpha.
using PackAFn = void (*)(const float* a, int64_t rs, int64_t cs, int64_t mc, int64_t kc, float alpha, float* dst);
// Packs panels [p0, p1) of the kc x nc block of B (element (k, j) at b[k*rs + j*cs]).
using PackBFn = void (*)(const float* b, int64_t rs, int64_t cs, int64_t kc, int64_t nc, int64_t p0, int64_t p1,
                         float* dst);

struct GemmMicroKernel {
  std::string_view name;  // "6x16"
  int mr, nr;
  MicroKernelFn run;
  PackAFn pack_a;
  PackBFn pack_b;
};

inline constexpr int kMaxMicroKernels = 6;

// Unpacked kernels for a few rows of A (M <= kSmallM), where packing B would cost more than the
// product: batch-1 inference is mostly such GEMV-like products. Both write raw sums (times alpha,
// plus C when accumulating); the driver applies the rest of the epilogue.
inline constexpr int64_t kSmallM = 4;
// B row-major (element (k, j) at b[k*ldb + j]): row-by-row axpy, k ascending, one FMA per term,
// so results are bitwise those of the packed path.
using SmallNNFn = void (*)(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda_row, int64_t lda_col,
                           float alpha, const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate);
// B stored transposed (element (k, j) at b[j*ldb + k], a Linear weight): dot products along K.
using SmallNTFn = void (*)(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, float alpha,
                           const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate);

struct GemmKernelSet {
  std::string_view isa;
  int count;
  GemmMicroKernel kernels[kMaxMicroKernels];  // kernels[0] is the default choice
  SmallNNFn small_nn;
  SmallNTFn small_nt;
};

// The set for the ISA float_kernels() uses (KILN_ISA can force a lower one), or a named one
// ("portable", "avx2", "avx512"; nullptr when this CPU cannot run it) for tests and tuning.
const GemmKernelSet& gemm_kernels();
const GemmKernelSet* gemm_kernels_for(std::string_view isa);

}  // namespace kiln::ops::cpu
