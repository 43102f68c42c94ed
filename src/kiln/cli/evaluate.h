// Evaluation of a model on a dataset: mean loss and accuracy, without autograd, in eval mode.
#pragma once

#include <functional>

#include "kiln/cli/task.h"
#include "kiln/nn/module.h"

namespace kiln::cli {

struct EvalResult {
  double loss = 0.0;
  double accuracy = 0.0;
  int64_t count = 0;  // predictions scored (images, or tokens)
};

EvalResult evaluate(nn::Module& model, const data::DatasetPtr& dataset, int64_t batch_size, int64_t max_batches = 0);
// The same for any forward function (a compiled graph): batch input -> logits.
EvalResult evaluate(const std::function<Tensor(const Tensor&)>& forward, const data::DatasetPtr& dataset,
                    int64_t batch_size, int64_t max_batches = 0);

}  // namespace kiln::cli
