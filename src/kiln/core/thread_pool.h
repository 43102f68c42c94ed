// The intra-op thread pool. It is OpenMP's pool on purpose: oneDNN (our GEMM for now) runs on
// OpenMP too, so sharing one pool means the two never fight over the 2 cores with spinning
// threads. Work is split statically, so a given thread count always partitions work the same
// way; reductions combine per-chunk partials in chunk order, so results do not depend on timing.
#pragma once

#include <cstdint>
#include <functional>

namespace kiln {

void set_num_threads(int n);  // n >= 1
int get_num_threads();
bool in_parallel_region();

// Calls fn(lo, hi) over disjoint chunks covering [begin, end). Runs inline when the range is
// smaller than `grain` (small tensors must not pay thread start-up) or when already parallel.
void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn);

// Number of fixed-size chunks of `chunk` elements that cover n (for deterministic reductions).
inline int64_t num_chunks(int64_t n, int64_t chunk) { return (n + chunk - 1) / chunk; }

}  // namespace kiln
