// The fixed summation tree behind every Kiln reduction across ranks or data shards.
//
// Floating-point addition is commutative but not associative, so a sum over ranks is only
// reproducible if its grouping is fixed. MPI's allreduce picks its algorithm (and grouping) at
// run time from message size and world size; Kiln instead always sums k values v_0..v_{k-1} as
// the tree T(k):
//
//   1. with P the largest power of two <= k, fold the tail in: v_i += v_{i+P} for i < k - P;
//   2. halve: for d = P/2, P/4, ..., 1: v_i += v_{i+d} for i < d.   The sum is v_0.
//
// For k = 4: ((v0 + v2) + (v1 + v3)). Step 2 pairs ranks whose index differs in the highest bit
// first, which is what recursive halving does (collectives.cpp), so the distributed sum over N
// ranks and the in-process sum over N buffers are the same expression. And when k = N * L is a
// power of two and rank r holds leaves r, r + N, r + 2N, ..., summing its L leaves with T(L)
// first and then the ranks' partials with T(N) is again T(k): that is how N ranks give the bits
// of one process that computes all k data shards itself (data_parallel.h).
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/core/dtype.h"
#include "kiln/dist/communicator.h"

namespace kiln::dist {

inline int largest_power_of_two_at_most(int k) {
  int p = 1;
  while (p * 2 <= k) p *= 2;
  return p;
}

// dst[i] = op(dst[i], src[i]) for n elements of dtype (f32, f64 or i64).
void combine(void* dst, const void* src, int64_t n, DType dtype, ReduceOp op);

// T(k) over leaves[0..k) in place; the result lands in leaves[0]. The other leaves are scratch.
void tree_reduce(const std::vector<void*>& leaves, int64_t n, DType dtype, ReduceOp op = ReduceOp::sum);

}  // namespace kiln::dist
