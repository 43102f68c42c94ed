// How Kiln's GEMM blocks a given problem: micro-kernel, cache blocks and thread split. A
// heuristic gives sane defaults; the auto-tuner (the AutoTVM idea, for one CPU) measures
// candidates on first use of a shape when KILN_AUTOTUNE=on (or `kiln tune-kernels`) and
// remembers the winner in the tuning cache file (tune_cache.h). No configuration changes the
// summation order, so tuned and untuned runs give bitwise-identical results.
#pragma once

#include <cstdint>
#include <string>

#include "kiln/ops/cpu/gemm.h"
#include "kiln/ops/cpu/gemm_kernel.h"

namespace kiln::ops::cpu {

struct GemmConfig {
  int kernel = 0;          // index into GemmKernelSet::kernels
  int64_t mc = 0;          // rows of A packed per block (multiple of MR)
  int64_t kc = 0;          // depth of a packed block
  int64_t nc = 0;          // columns of B packed per block (multiple of NR)
  bool split_n = false;    // threads split N, each packing its own B (else split M, sharing B)

  std::string to_string() const;
  static bool parse(const std::string& s, GemmConfig* out);
};

// The problem as the tuner sees it: shape, thread count and whether each operand is stored
// transposed (its packing differs).
struct GemmProblem {
  int64_t batch, M, N, K;
  int threads;
  bool a_trans, b_trans;
  std::string key(std::string_view isa) const;
};

GemmConfig default_gemm_config(const GemmKernelSet& ks, const GemmProblem& p);
// Clamps a (possibly hand-written or cached) configuration into a valid one for this problem.
GemmConfig sanitize_gemm_config(const GemmKernelSet& ks, const GemmProblem& p, GemmConfig c);

// The configuration sgemm uses: cached winner, else (tuning on) a measured search, else defaults.
GemmConfig gemm_config_for(const GemmKernelSet& ks, const GemmProblem& p);
// Measures candidate configurations for p and returns the fastest (also stores it in the cache).
GemmConfig tune_gemm(const GemmKernelSet& ks, const GemmProblem& p);

// sgemm with an explicit kernel set and configuration (tests run every variant through this).
void sgemm_with(const GemmKernelSet& ks, const GemmConfig& cfg, int64_t batch, int64_t M, int64_t N, int64_t K,
                MatrixView a, MatrixView b, OutputView c, const GemmEpilogue& ep);

}  // namespace kiln::ops::cpu
