// Synthetic batches: random images (N, 1, 28, 28) with labels in [0, 10), or random token ids
// over a 65-character vocabulary with next-token targets, from fixed seeds.
#include "kiln/cli/synthetic.h"

#include "kiln/autograd/engine.h"
#include "kiln/cli/task.h"
#include "kiln/core/rng.h"
#include "kiln/nn/models.h"
#include "kiln/ops/ops.h"

namespace kiln::cli {

SyntheticTask make_synthetic_task(const std::string& model, int64_t batch) {
  nn::ModelSpec spec;
  spec.name = model;
  bool text = model == "gpt_char";
  if (batch <= 0) batch = text ? 32 : 128;
  constexpr int64_t kVocab = 65;  // the size of a typical English character vocabulary
  if (text) spec.vocab_size = kVocab;
  SyntheticTask t;
  t.model = nn::make_model(spec, 1);
  Generator gen(2);
  if (text) {
    auto ids = [&] {
      return ops::clamp(ops::to(ops::mul(rand({batch, spec.context}, gen), static_cast<double>(kVocab)), DType::i64),
                        0, kVocab - 1);
    };
    t.input = ids();
    t.target = ids();
    t.samples = batch * spec.context;
    t.unit = "tokens/s";
  } else {
    t.input = randn({batch, 1, 28, 28}, gen);
    t.target = ops::clamp(ops::to(ops::mul(rand({batch}, gen), 10.0), DType::i64), 0, 9);
    t.samples = batch;
    t.unit = "images/s";
  }
  return t;
}

void forward_backward(const SyntheticTask& task) {
  Tensor loss = task_loss(task.model->forward(task.input), task.target);
  autograd::backward(loss);
  task.model->zero_grad();
}

}  // namespace kiln::cli
