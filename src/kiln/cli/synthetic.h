// A reference model with a synthetic batch of the right shape and type, for the commands that
// measure or tune the framework rather than learn anything (bench train/infer, tune-kernels).
#pragma once

#include <string>

#include "kiln/core/tensor.h"
#include "kiln/nn/module.h"

namespace kiln::cli {

struct SyntheticTask {
  nn::ModulePtr model;
  Tensor input, target;
  int64_t samples;   // images, or tokens for text models, per batch
  std::string unit;  // "images/s" or "tokens/s"
};

// batch <= 0 picks the default: 128 images or 32 sequences.
SyntheticTask make_synthetic_task(const std::string& model, int64_t batch);

// One forward and backward pass, gradients then cleared: every kernel shape a training step
// uses, without changing the weights (what tuning needs to see).
void forward_backward(const SyntheticTask& task);

}  // namespace kiln::cli
