// NumPy's legacy random stream (np.random.seed / RandomState: MT19937 and randomkit's doubles),
// for the kernels of ONNX's random operators: ONNX's reference implementations draw from it, so a
// seeded node draws exactly what the reference draws (dropout, bernoulli).
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <random>

namespace kiln::graph {

// std::mt19937 seeded with a 32-bit value is the generator np.random.seed(value) makes.
// randomkit's rk_double: a uniform double in [0, 1) from 53 random bits of two 32-bit draws.
inline double numpy_uniform(std::mt19937& g) {
  const uint32_t a = g() >> 5, b = g() >> 6;
  return (a * 67108864.0 + b) / 9007199254740992.0;
}

// np.random.binomial(1, p) for p in [0, 1]: legacy random_binomial with n = 1, which for p <= 0.5
// draws U and returns U > (1 - p) (computed as exp(log(1 - p)), as NumPy does), and for p > 0.5
// returns 1 minus the draw for 1 - p. p == 0 draws nothing.
inline bool numpy_bernoulli(std::mt19937& g, double p) {
  if (p == 0.0) return false;
  const bool flip = p > 0.5;
  const double pp = flip ? 1.0 - p : p;
  const bool one = numpy_uniform(g) > std::exp(std::log(1.0 - pp));
  return flip ? !one : one;
}

// A seed for a node that has none: different on every call and in every process.
inline uint32_t fresh_seed() {
  static std::atomic<uint32_t> counter{0x9e3779b9u};
  return counter.fetch_add(0x9e3779b9u) ^ static_cast<uint32_t>(std::random_device{}());
}

}  // namespace kiln::graph
