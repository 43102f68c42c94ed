// BatchNorm and LayerNorm modules over ops::batch_norm / ops::layer_norm.
#include "kiln/nn/norm.h"

#include "kiln/core/grad_mode.h"
#include "kiln/ops/nn_ops.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::nn {

BatchNorm::BatchNorm(int64_t num_features, const BatchNormArgs& args) : args_(args) {
  KILN_CHECK(num_features > 0, "BatchNorm: num_features must be positive, got ", num_features);
  KILN_CHECK(args.eps > 0 && args.momentum >= 0 && args.momentum <= 1, "BatchNorm: invalid eps ", args.eps,
             " or momentum ", args.momentum);
  if (args.affine) {
    weight_ = register_parameter("weight", Tensor::ones({num_features}));
    bias_ = register_parameter("bias", Tensor::zeros({num_features}));
  }
  running_mean_ = register_buffer("running_mean", Tensor::zeros({num_features}));
  running_var_ = register_buffer("running_var", Tensor::ones({num_features}));
  num_batches_tracked_ = register_buffer("num_batches_tracked", Tensor::zeros({}, DType::i64));
}

Tensor BatchNorm::normalize(const Tensor& x) {
  KILN_CHECK(x.dim() >= 2 && x.size(1) == num_features(), name(), ": expected ", num_features(),
             " channels in dim 1, got input ", shape_str(x.shape()));
  if (is_training()) {
    NoGradGuard no_grad;
    num_batches_tracked_.data<int64_t>()[0] += 1;
    num_batches_tracked_.bump_version();
  }
  return ops::batch_norm(x, weight_, bias_, running_mean_, running_var_, is_training(), args_.momentum, args_.eps);
}

Tensor BatchNorm1d::forward(const Tensor& x) {
  KILN_CHECK(x.dim() == 2 || x.dim() == 3, "BatchNorm1d: expected input (N, C) or (N, C, L), got ",
             shape_str(x.shape()));
  if (x.dim() == 2) return normalize(x);
  // (N, C, L) is (N, C, L, 1) to the 2-d kernel: same statistics over N and L.
  return ops::squeeze(normalize(ops::unsqueeze(x, 3)), 3);
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  KILN_CHECK(x.dim() == 4, "BatchNorm2d: expected input (N, C, H, W), got ", shape_str(x.shape()));
  return normalize(x);
}

LayerNorm::LayerNorm(Shape normalized_shape, double eps, bool affine)
    : normalized_shape_(std::move(normalized_shape)), eps_(eps) {
  KILN_CHECK(!normalized_shape_.empty() && numel(normalized_shape_) > 0, "LayerNorm: invalid normalized_shape ",
             shape_str(normalized_shape_));
  if (affine) {
    weight_ = register_parameter("weight", Tensor::ones(normalized_shape_));
    bias_ = register_parameter("bias", Tensor::zeros(normalized_shape_));
  }
}

Tensor LayerNorm::forward(const Tensor& x) { return ops::layer_norm(x, normalized_shape_, weight_, bias_, eps_); }

}  // namespace kiln::nn
