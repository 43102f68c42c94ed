// 2-d convolution layer (NCHW) over ops::conv2d, with PyTorch's default initialisation.
#pragma once

#include "kiln/core/rng.h"
#include "kiln/nn/module.h"

namespace kiln::nn {

struct Conv2dArgs {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

// Init: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in/groups * k * k.
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Generator& gen, const Conv2dArgs& args = {});
  Tensor forward(const Tensor& x) override;  // (N, C, H, W) -> (N, O, OH, OW)
  std::string name() const override { return "Conv2d"; }
  const Tensor& weight() const { return weight_; }  // (O, C/groups, k, k)
  const Tensor& bias() const { return bias_; }      // (O), undefined without bias
  const Conv2dArgs& args() const { return args_; }

 private:
  Tensor weight_, bias_;
  Conv2dArgs args_;
};

}  // namespace kiln::nn
