// Autoregressive sampling from a language model such as gpt_char: repeatedly run the model on
// the last `context` ids and draw the next id from the final position's logits.
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/core/rng.h"
#include "kiln/nn/module.h"

namespace kiln::nn {

struct SampleOptions {
  double temperature = 1.0;  // 0 picks the most likely id (greedy)
  int64_t top_k = 0;         // > 0 keeps only the k most likely ids
  int64_t context = 128;     // the model's maximum sequence length
};

// Returns the prompt followed by `n_new` sampled ids. The model maps (1, T) i64 ids to
// (1, T, V) logits; it runs in eval mode without autograd (its mode is restored after).
// Draws one gen.next_uniform() per new id, so a seed fixes the text.
std::vector<int64_t> generate(Module& model, const std::vector<int64_t>& prompt, int64_t n_new, Generator& gen,
                              const SampleOptions& opt = {});

// One draw from logits (V) under the options: the building block of generate().
int64_t sample_logits(const std::vector<double>& logits, const SampleOptions& opt, Generator& gen);

}  // namespace kiln::nn
