// Normalisation layers: BatchNorm1d/2d (batch statistics in training, running statistics in
// eval) and LayerNorm. Affine weight starts at 1, bias at 0, as in PyTorch.
#pragma once

#include "kiln/nn/module.h"

namespace kiln::nn {

struct BatchNormArgs {
  double eps = 1e-5;
  double momentum = 0.1;  // running = (1 - momentum) * running + momentum * batch
  bool affine = true;
};

// Parameters weight, bias (C); buffers running_mean (C, zeros), running_var (C, ones) and
// num_batches_tracked (i64 scalar, counts training forwards; kept for PyTorch-compatible keys).
class BatchNorm : public Module {
 public:
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  const Tensor& running_mean() const { return running_mean_; }
  const Tensor& running_var() const { return running_var_; }
  const Tensor& num_batches_tracked() const { return num_batches_tracked_; }
  int64_t num_features() const { return running_mean_.size(0); }
  const BatchNormArgs& args() const { return args_; }

 protected:
  BatchNorm(int64_t num_features, const BatchNormArgs& args);
  Tensor normalize(const Tensor& x);  // x (N, C) or (N, C, H, W)

 private:
  Tensor weight_, bias_, running_mean_, running_var_, num_batches_tracked_;
  BatchNormArgs args_;
};

class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t num_features, const BatchNormArgs& args = {}) : BatchNorm(num_features, args) {}
  Tensor forward(const Tensor& x) override;  // (N, C) or (N, C, L)
  std::string name() const override { return "BatchNorm1d"; }
};

class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t num_features, const BatchNormArgs& args = {}) : BatchNorm(num_features, args) {}
  Tensor forward(const Tensor& x) override;  // (N, C, H, W)
  std::string name() const override { return "BatchNorm2d"; }
};

// Normalises over the trailing dims `normalized_shape`.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool affine = true);
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool affine = true) : LayerNorm(Shape{dim}, eps, affine) {}
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "LayerNorm"; }
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Shape normalized_shape_;
  double eps_;
  Tensor weight_, bias_;
};

}  // namespace kiln::nn
