// Picks the fused-attention kernel build for this CPU and spreads its work items over the pool.
#include "kiln/ops/cpu/flash_attention.h"

#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/float_kernels.h"

namespace kiln::ops::cpu {

namespace portable { extern const FlashAttentionKernels kFlashAttentionKernels; }
namespace avx2 { extern const FlashAttentionKernels kFlashAttentionKernels; }
namespace avx512 { extern const FlashAttentionKernels kFlashAttentionKernels; }

const FlashAttentionKernels* flash_attention_kernels_for(std::string_view isa) {
  if (isa == "portable") return &portable::kFlashAttentionKernels;
  if (isa == "avx2") return &avx2::kFlashAttentionKernels;
  if (isa == "avx512") return &avx512::kFlashAttentionKernels;
  return nullptr;
}

// Follows the elementwise kernels' choice, so KILN_ISA forces this one too.
const FlashAttentionKernels& flash_attention_kernels() {
  static const FlashAttentionKernels* k = [] {
    const FlashAttentionKernels* p = flash_attention_kernels_for(simd_level());
    return p ? p : &portable::kFlashAttentionKernels;
  }();
  return *k;
}

namespace {

// Work below about a million flops runs on the calling thread: waking the pool costs more.
int64_t grain_for(const AttnDims& d, int64_t items) {
  double flops = 2.0 * d.B * d.H * d.T * d.S * (d.D + d.Dv);
  return flops < 1e6 ? items : 1;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

void flash_attention_forward(const FlashAttentionKernels& k, const FlashForwardArgs& a) {
  const AttnDims& d = a.dims;
  const int64_t items = d.B * d.H * ceil_div(d.T, d.block_q);
  parallel_for(0, items, grain_for(d, items), [&](int64_t lo, int64_t hi) { k.forward(a, lo, hi); });
}

void flash_attention_backward(const FlashAttentionKernels& k, const FlashBackwardArgs& a) {
  const AttnDims& d = a.dims;
  const int64_t BH = d.B * d.H, threads = get_num_threads();
  if (BH >= 2 * threads || BH % threads == 0) {
    // Enough (b, h) pairs to keep every thread busy: one sweep per pair, no recomputation.
    parallel_for(0, BH, grain_for(d, BH), [&](int64_t lo, int64_t hi) { k.backward_fused(a, lo, hi); });
    return;
  }
  const int64_t nk = BH * ceil_div(d.S, d.block_k), nq = BH * ceil_div(d.T, d.block_q);
  parallel_for(0, nk, grain_for(d, nk), [&](int64_t lo, int64_t hi) { k.backward_kv(a, lo, hi); });
  parallel_for(0, nq, grain_for(d, nq), [&](int64_t lo, int64_t hi) { k.backward_q(a, lo, hi); });
}

}  // namespace kiln::ops::cpu
