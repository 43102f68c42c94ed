// Pooling layers over the ops of the same names (NCHW).
#pragma once

#include <array>

#include "kiln/nn/module.h"

namespace kiln::nn {

// stride 0 means stride = kernel_size.
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0)
      : kernel_(kernel_size), stride_(stride == 0 ? kernel_size : stride), padding_(padding) {}
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "MaxPool2d"; }

 private:
  int64_t kernel_, stride_, padding_;
};

// Padding counts in the divisor (count_include_pad), as PyTorch's default.
class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0)
      : kernel_(kernel_size), stride_(stride == 0 ? kernel_size : stride), padding_(padding) {}
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "AvgPool2d"; }

 private:
  int64_t kernel_, stride_, padding_;
};

class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(std::array<int64_t, 2> output_size) : output_size_(output_size) {}
  explicit AdaptiveAvgPool2d(int64_t output_size) : output_size_{output_size, output_size} {}
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "AdaptiveAvgPool2d"; }

 private:
  std::array<int64_t, 2> output_size_;
};

}  // namespace kiln::nn
