// Fused (FlashAttention-2 style) f32 attention: scores are processed in (block_q x block_k)
// tiles with an online softmax, so neither pass ever holds a (T, S) matrix; forward keeps only
// the output O and the per-row log-sum-exp L, and backward recomputes the tiles from them.
// The tile loops live in flash_attention_isa.cpp, built once per instruction set.
#pragma once

#include <cstdint>
#include <string_view>

#include "kiln/core/tensor.h"

namespace kiln::ops::cpu {

// A (B, H, rows, cols) operand whose last dim is dense: element (b, h, r, c) is at
// data + b*sb + h*sh + r*sr + c. Covers contiguous tensors and the head-split views a
// transformer makes of its fused qkv projection, so those are read in place.
struct AttnIn {
  const float* data;
  int64_t sb, sh, sr;
};
struct AttnOut {
  float* data;  // null: not wanted
  int64_t sb, sh, sr;
};

// Sizes. Query row t attends to key s when !causal or s <= t (the top-left aligned mask, as
// softmax_rows' causal_period). block_q and block_k must be multiples of 16 (the widest vector).
struct AttnDims {
  int64_t B, H, T, S, D, Dv;  // q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv)
  bool causal;
  float scale;  // usually 1/sqrt(D)
  int64_t block_q = 64, block_k = 64;
};

struct FlashForwardArgs {
  AttnDims dims;
  AttnIn q, k, v;
  AttnOut o;   // (B, H, T, Dv)
  float* lse;  // (B*H, T) dense: m + log(l) per query row, all backward needs besides O
};

struct FlashBackwardArgs {
  AttnDims dims;
  AttnIn q, k, v, o, dout;  // o: the forward output; dout (B, H, T, Dv)
  const float* lse;         // (B*H, T) from the forward
  AttnOut dq, dk, dv;       // each may be absent (data null)
};

// One instruction set's kernels. Each processes a range [lo, hi) of independent work items; no
// two items write the same output rows, and every sum runs in an order fixed by the shapes and
// block sizes alone, so results never depend on the thread count or on how items are split.
struct FlashAttentionKernels {
  std::string_view isa;
  // items: (bh, query block), bh-major
  void (*forward)(const FlashForwardArgs& a, int64_t lo, int64_t hi);
  // items: bh. dK, dV per key block and dQ accumulated in key-block order, all in one sweep.
  void (*backward_fused)(const FlashBackwardArgs& a, int64_t lo, int64_t hi);
  // The same gradients in two sweeps, for few (b, h) pairs: dK and dV over items (bh, key block),
  // then dQ over items (bh, query block). Bitwise equal to backward_fused (same tile code, same
  // summation order), at the cost of recomputing the score tiles once more.
  void (*backward_kv)(const FlashBackwardArgs& a, int64_t lo, int64_t hi);
  void (*backward_q)(const FlashBackwardArgs& a, int64_t lo, int64_t hi);
};

// The kernels for the instruction set simd_level() picked (KILN_ISA forces a lower one).
const FlashAttentionKernels& flash_attention_kernels();
// A given build, "portable", "avx2" or "avx512" (nullptr for another name). The caller must
// check that the CPU supports it.
const FlashAttentionKernels* flash_attention_kernels_for(std::string_view isa);

// Run the kernels over the thread pool. The backward picks the fused or two-sweep form from the
// number of (b, h) pairs and threads; both give identical bits.
void flash_attention_forward(const FlashAttentionKernels& k, const FlashForwardArgs& a);
void flash_attention_backward(const FlashAttentionKernels& k, const FlashBackwardArgs& a);

}  // namespace kiln::ops::cpu

namespace kiln::ops {

// The pre-flash implementation: batched GEMMs around a (T, S) probability matrix kept for
// backward. It serves f64 (the oracle gradient checks use) and empty shapes, and stays callable
// for tests and the attention benchmark. Same contract as scaled_dot_product_attention.
Tensor scaled_dot_product_attention_materialized(const Tensor& q, const Tensor& k, const Tensor& v, bool causal);

}  // namespace kiln::ops
