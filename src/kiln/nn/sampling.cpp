// Temperature / top-k sampling. The softmax is done in double on the host: V is small.
#include "kiln/nn/sampling.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "kiln/core/grad_mode.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::nn {

int64_t sample_logits(const std::vector<double>& logits, const SampleOptions& opt, Generator& gen) {
  KILN_CHECK(!logits.empty(), "sample: empty logits");
  KILN_CHECK(opt.temperature >= 0, "sample: temperature must be non-negative, got ", opt.temperature);
  const int64_t V = static_cast<int64_t>(logits.size());
  if (opt.temperature == 0) {
    gen.next_uniform();  // keep one draw per token whatever the temperature
    return std::max_element(logits.begin(), logits.end()) - logits.begin();
  }
  // Keep the top k: everything strictly below the k-th largest logit is dropped (ties kept).
  double cutoff = -std::numeric_limits<double>::infinity();
  if (opt.top_k > 0 && opt.top_k < V) {
    std::vector<double> sorted = logits;
    std::nth_element(sorted.begin(), sorted.begin() + (opt.top_k - 1), sorted.end(), std::greater<double>());
    cutoff = sorted[opt.top_k - 1];
  }
  double mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size(), 0.0);
  double total = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (logits[i] < cutoff) continue;
    p[i] = std::exp((logits[i] - mx) / opt.temperature);
    total += p[i];
  }
  double u = gen.next_uniform() * total, acc = 0;
  int64_t last = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (p[i] == 0) continue;
    acc += p[i];
    last = i;
    if (u < acc) return i;
  }
  return last;  // rounding put u at the very top
}

std::vector<int64_t> generate(Module& model, const std::vector<int64_t>& prompt, int64_t n_new, Generator& gen,
                              const SampleOptions& opt) {
  KILN_CHECK(!prompt.empty(), "generate: the prompt needs at least one id");
  KILN_CHECK(n_new >= 0 && opt.context > 0, "generate: invalid n_new ", n_new, " or context ", opt.context);
  NoGradGuard no_grad;
  bool was_training = model.is_training();
  model.eval();
  std::vector<int64_t> ids = prompt;
  try {
    for (int64_t step = 0; step < n_new; ++step) {
      int64_t T = std::min<int64_t>(static_cast<int64_t>(ids.size()), opt.context);
      std::vector<int64_t> window(ids.end() - T, ids.end());
      Tensor logits = model.forward(Tensor::from_vector(window, {1, T}));  // (1, T, V)
      KILN_CHECK(logits.dim() == 3 && logits.size(0) == 1 && logits.size(1) == T,
                 "generate: expected logits (1, ", T, ", V), got ", shape_str(logits.shape()));
      ids.push_back(sample_logits(ops::slice(logits, 1, T - 1, T).to_vector<double>(), opt, gen));
    }
  } catch (...) {
    model.train(was_training);
    throw;
  }
  model.train(was_training);
  return ids;
}

}  // namespace kiln::nn
