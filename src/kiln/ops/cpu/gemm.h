// Strided batched GEMM, the one entry point for every matrix product:
//   C[b] = act(C_old[b] (when accumulating) + alpha * A[b] @ B[b] + bias) + residual[b]
// f32 runs Kiln's own packed, cache-blocked GEMM (gemm_kernel.h; micro-kernels per instruction
// set, blocking chosen by the auto-tuner in gemm_tuning.h); f64 runs the reference loop, which
// is also the oracle in tests. oneDNN's matmul stays reachable as gemm_f32_onednn for the
// benchmarks that compare against it.
#pragma once

#include <cstdint>
#include <memory>
#include <type_traits>

namespace kiln::ops::cpu {

// A read-only operand: element (b, r, c) is at data + b*batch_stride + r*row_stride + c*col_stride.
// Any strides are allowed (a transposed operand is just swapped strides; packing absorbs them).
struct MatrixView {
  const void* data;
  int64_t batch_stride;  // 0 when the operand is shared by every batch entry
  int64_t row_stride;
  int64_t col_stride;
};

// The output: element (b, r, c) at data + b*batch_stride + r*row_stride + c (columns are dense).
struct OutputView {
  float* data;
  int64_t batch_stride;
  int64_t row_stride;
};

enum class GemmActivation : uint8_t { none, relu, gelu, gelu_tanh };

// What happens to each output element after its dot product, while it is still in registers, so
// Linear + bias + activation (+ residual) is one pass over C.
struct GemmEpilogue {
  float alpha = 1.0f;               // scales A@B (folded into the packed A panel)
  bool accumulate = false;          // start from the existing C instead of zero
  const float* bias = nullptr;      // (N), or (M) when bias_per_row
  bool bias_per_row = false;
  GemmActivation act = GemmActivation::none;
  const float* residual = nullptr;  // laid out like C (same strides), added last
};

// Kiln's f32 GEMM. Every C element is summed in the same order (k = 0, 1, ..., K-1, one FMA at a
// time), whatever the blocking, micro-kernel shape or thread count, so tuning never changes results.
void sgemm(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, OutputView c,
           const GemmEpilogue& ep = {});

// A right operand packed once into the micro-kernel's panels, for products that reuse it (a
// compiled graph's constant weights): sgemm_prepacked then skips the per-call packing of B, which
// costs as much as 10% of a batch-1 transformer forward. Layout: for each depth block of kc rows
// (the last may be shorter), ceil(N / NR) panels of kc x NR, so any block of whole panels is
// contiguous. The source stays referenced (products of a few rows read it unpacked) and must
// outlive this.
struct PackedB {
  int64_t K = 0, N = 0;
  int kernel = 0;      // index into the kernel set it was packed for
  int64_t kc = 0, npad = 0;  // depth block; N rounded up to whole panels
  const void* kernels = nullptr;  // the GemmKernelSet (opaque here)
  MatrixView source{};
  std::shared_ptr<float> data;  // 64-byte aligned
};
// Packs B (K x N, any strides) for the current kernel set and the default blocking of its depth.
PackedB pack_b_once(int64_t K, int64_t N, MatrixView b);
// C (M x N, row stride c.row_stride) = epilogue(A @ B) with B from pack_b_once: bitwise the same
// as sgemm on the source operand.
void sgemm_prepacked(int64_t M, MatrixView a, const PackedB& b, OutputView c, const GemmEpilogue& ep = {});

// Dense row-major C (batch, M, N) with an optional per-column bias: the common case.
void gemm_f32(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, float* c,
              const float* bias);
// oneDNN's matmul (benchmarks and cross-checks only).
void gemm_f32_onednn(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, float* c,
                     const float* bias);
void gemm_f64_ref(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, double* c,
                  const double* bias);
void gemm_f32_ref(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, float* c,
                  const float* bias);

// The typed entry the ops use: f32 on Kiln's GEMM, f64 on the reference loop.
template <typename T>
void gemm(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, T* c,
          const T* bias = nullptr) {
  if constexpr (std::is_same_v<T, float>)
    gemm_f32(batch, M, N, K, a, b, c, bias);
  else
    gemm_f64_ref(batch, M, N, K, a, b, c, bias);
}

}  // namespace kiln::ops::cpu
