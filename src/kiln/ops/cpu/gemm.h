// Strided batched GEMM: C[b] = A[b] @ B[b] (+ bias), the one entry point for every matrix
// product. f32 runs on oneDNN's matmul primitive (primitives cached per shape/stride key);
// f64 runs the reference loop, which is also the oracle in tests.
#pragma once

#include <cstdint>
#include <type_traits>

namespace kiln::ops::cpu {

struct MatrixView {
  const void* data;
  int64_t batch_stride;  // 0 when the operand is shared by every batch entry
  int64_t row_stride;
  int64_t col_stride;
};

// C (batch, M, N) is dense row-major. bias (N) is optional (nullptr).
void gemm_f32(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, float* c,
              const float* bias);
void gemm_f64_ref(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, double* c,
                  const double* bias);
void gemm_f32_ref(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, float* c,
                  const float* bias);

// The typed entry the ops use: f32 on oneDNN, f64 on the reference loop.
template <typename T>
void gemm(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, T* c,
          const T* bias = nullptr) {
  if constexpr (std::is_same_v<T, float>)
    gemm_f32(batch, M, N, K, a, b, c, bias);
  else
    gemm_f64_ref(batch, M, N, K, a, b, c, bias);
}

}  // namespace kiln::ops::cpu
