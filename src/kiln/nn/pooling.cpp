// Pooling modules.
#include "kiln/nn/pooling.h"

#include "kiln/ops/nn_ops.h"

namespace kiln::nn {

Tensor MaxPool2d::forward(const Tensor& x) {
  return ops::max_pool2d(x, {kernel_, kernel_}, {stride_, stride_}, {padding_, padding_});
}

Tensor AvgPool2d::forward(const Tensor& x) {
  return ops::avg_pool2d(x, {kernel_, kernel_}, {stride_, stride_}, {padding_, padding_});
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) { return ops::adaptive_avg_pool2d(x, output_size_); }

}  // namespace kiln::nn
