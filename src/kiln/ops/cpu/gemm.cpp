// TEMPORARY: sgemm forwarding while the packed GEMM is written.
#include "kiln/ops/cpu/gemm.h"

namespace kiln::ops::cpu {

void gemm_f32(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, float* c,
              const float* bias) {
  gemm_f32_onednn(batch, M, N, K, a, b, c, bias);
}

}  // namespace kiln::ops::cpu
