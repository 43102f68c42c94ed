// Reference GEMM: the textbook triple loop (i, k, j order so the inner loop walks a row of B and
// C), accumulated in the element type. Used for f64 and as the test oracle for the fast paths.
#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/gemm.h"

namespace kiln::ops::cpu {

namespace {
template <typename T>
void gemm_ref(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, T* c, const T* bias) {
  const T* pa = static_cast<const T*>(a.data);
  const T* pb = static_cast<const T*>(b.data);
  parallel_for(0, batch * M, 64, [&](int64_t lo, int64_t hi) {
    for (int64_t bm = lo; bm < hi; ++bm) {
      int64_t bi = bm / M, i = bm % M;
      T* crow = c + (bi * M + i) * N;
      for (int64_t j = 0; j < N; ++j) crow[j] = bias ? bias[j] : T(0);
      for (int64_t k = 0; k < K; ++k) {
        T av = pa[bi * a.batch_stride + i * a.row_stride + k * a.col_stride];
        const T* brow = pb + bi * b.batch_stride + k * b.row_stride;
        for (int64_t j = 0; j < N; ++j) crow[j] += av * brow[j * b.col_stride];
      }
    }
  });
}
}  // namespace

void gemm_f64_ref(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, double* c,
                  const double* bias) {
  gemm_ref(batch, M, N, K, a, b, c, bias);
}

void gemm_f32_ref(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, float* c,
                  const float* bias) {
  gemm_ref(batch, M, N, K, a, b, c, bias);
}

}  // namespace kiln::ops::cpu
