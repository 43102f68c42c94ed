// resnet_small: a small residual CNN for 28x28 grey images (Fashion-MNIST), ResNet-style basic
// blocks with batch norm. See resnet.cpp for the layout, its cost and its parameter count.
#pragma once

#include <memory>

#include "kiln/core/rng.h"
#include "kiln/nn/conv.h"
#include "kiln/nn/linear.h"
#include "kiln/nn/norm.h"
#include "kiln/nn/sequential.h"

namespace kiln::nn {

// out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); 3x3 convs without bias; the shortcut
// is a 1x1 strided conv + BN when the shape changes, the identity otherwise.
class BasicBlock : public Module {
 public:
  BasicBlock(int64_t in_channels, int64_t out_channels, int64_t stride, Generator& gen);
  Tensor forward(const Tensor& x) override;  // (N, in, H, W) -> (N, out, H/stride, W/stride)
  std::string name() const override { return "BasicBlock"; }

 private:
  std::shared_ptr<Conv2d> conv1_, conv2_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_;
  std::shared_ptr<Sequential> downsample_;  // null for the identity shortcut
};

class ResNetSmall : public Module {
 public:
  ResNetSmall(int64_t in_channels, int64_t num_classes, Generator& gen);
  Tensor forward(const Tensor& x) override;  // (N, in_channels, H, W) f32 -> (N, num_classes) logits
  std::string name() const override { return "ResNetSmall"; }

 private:
  std::shared_ptr<Conv2d> conv1_;
  std::shared_ptr<BatchNorm2d> bn1_;
  std::shared_ptr<Sequential> layer1_, layer2_, layer3_;
  std::shared_ptr<Linear> fc_;
};

}  // namespace kiln::nn
