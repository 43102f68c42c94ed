// A counter-based random generator (Philox4x32-10, Salmon et al., SC'11). Each random number is a
// pure function of (seed, counter), so element i of a random tensor is the same whichever thread
// computes it: results depend on the seed, never on scheduling. A Generator is just (seed,
// offset); drawing n numbers reserves n counters. Its state is two integers, saved in checkpoints.
#pragma once

#include <array>
#include <cstdint>

#include "kiln/core/tensor.h"

namespace kiln {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

struct GeneratorState {
  uint64_t seed = 0;
  uint64_t offset = 0;  // counters used so far
};

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) { state_.seed = seed; }
  void manual_seed(uint64_t seed) { state_ = {seed, 0}; }
  GeneratorState state() const { return state_; }
  void set_state(GeneratorState s) { state_ = s; }

  // Reserves `n` counters and returns the first; counter c yields four 32-bit words.
  uint64_t reserve(uint64_t n) {
    uint64_t first = state_.offset;
    state_.offset += n;
    return first;
  }
  uint64_t seed() const { return state_.seed; }

  // Uniform in [0, 1) for element `i` of a draw that started at counter `base`.
  static float uniform_at(uint64_t seed, uint64_t base, uint64_t i);
  uint64_t next_u64();        // one 64-bit draw (shuffles, augmentation decisions)
  double next_uniform();      // [0, 1)

 private:
  GeneratorState state_;
};

Generator& default_generator();
void manual_seed(uint64_t seed);  // seeds the default generator

// Random tensors (f32 or f64). Each consumes ceil(numel/4) counters of `gen`.
Tensor rand(const Shape& shape, Generator& gen = default_generator(), DType dtype = DType::f32);
Tensor randn(const Shape& shape, Generator& gen = default_generator(), DType dtype = DType::f32);
Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen = default_generator(),
               DType dtype = DType::f32);
Tensor normal(const Shape& shape, double mean, double std, Generator& gen = default_generator(),
              DType dtype = DType::f32);

}  // namespace kiln
