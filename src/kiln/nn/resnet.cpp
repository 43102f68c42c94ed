// resnet_small. Layout for a 1x28x28 input:
//   conv1 3x3 1->32 + BN + ReLU                         28x28
//   layer1: BasicBlock 32->32                            28x28
//   layer2: BasicBlock 32->64, stride 2 (1x1 shortcut)   14x14
//   layer3: BasicBlock 64->128, stride 2 (1x1 shortcut)  7x7
//   global average pool, Linear 128->10
// Cost per image forward: 37.2 M multiply-adds (74 MFLOP counting the multiply and the add;
// "about 40 MFLOPs" in the convention of the ResNet papers), about 2/5 of it in layer1.
// Parameters: 308,074 (tests/nn/models_test.cpp checks the count).
// Init as torchvision: convs kaiming_normal (fan_out, relu), BN weight 1 and bias 0, and the
// classifier with Linear's default.
#include "kiln/nn/resnet.h"

#include "kiln/nn/init.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/nn_ops.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::nn {

namespace {

std::shared_ptr<Conv2d> conv(int64_t in, int64_t out, int64_t k, int64_t stride, Generator& gen) {
  auto c = std::make_shared<Conv2d>(in, out, k, gen, Conv2dArgs{.stride = stride, .padding = k / 2, .bias = false});
  Tensor w = c->weight();
  init::kaiming_normal_(w, gen, 0.0, init::FanMode::fan_out, init::Nonlinearity::relu);
  return c;
}

}  // namespace

BasicBlock::BasicBlock(int64_t in_channels, int64_t out_channels, int64_t stride, Generator& gen) {
  conv1_ = register_module("conv1", conv(in_channels, out_channels, 3, stride, gen));
  bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(out_channels));
  conv2_ = register_module("conv2", conv(out_channels, out_channels, 3, 1, gen));
  bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(out_channels));
  if (stride != 1 || in_channels != out_channels) {
    auto ds = std::make_shared<Sequential>();
    ds->add(conv(in_channels, out_channels, 1, stride, gen));
    ds->add(std::make_shared<BatchNorm2d>(out_channels));
    downsample_ = register_module("downsample", ds);
  }
}

Tensor BasicBlock::forward(const Tensor& x) {
  Tensor h = ops::relu(bn1_->forward(conv1_->forward(x)));
  h = bn2_->forward(conv2_->forward(h));
  return ops::relu(h + (downsample_ ? downsample_->forward(x) : x));
}

ResNetSmall::ResNetSmall(int64_t in_channels, int64_t num_classes, Generator& gen) {
  conv1_ = register_module("conv1", conv(in_channels, 32, 3, 1, gen));
  bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(32));
  auto stage = [&](int64_t in, int64_t out, int64_t stride) {
    auto s = std::make_shared<Sequential>();
    s->add(std::make_shared<BasicBlock>(in, out, stride, gen));
    return s;
  };
  layer1_ = register_module("layer1", stage(32, 32, 1));
  layer2_ = register_module("layer2", stage(32, 64, 2));
  layer3_ = register_module("layer3", stage(64, 128, 2));
  fc_ = register_module("fc", std::make_shared<Linear>(128, num_classes, gen));
}

Tensor ResNetSmall::forward(const Tensor& x) {
  KILN_CHECK(x.dim() == 4 && x.size(1) == conv1_->weight().size(1), "resnet_small: expected images (N, ",
             conv1_->weight().size(1), ", H, W), got ", shape_str(x.shape()));
  Tensor h = ops::relu(bn1_->forward(conv1_->forward(x)));
  h = layer3_->forward(layer2_->forward(layer1_->forward(h)));
  h = ops::flatten(ops::adaptive_avg_pool2d(h, {1, 1}), 1);  // (N, 128)
  return fc_->forward(h);
}

}  // namespace kiln::nn
