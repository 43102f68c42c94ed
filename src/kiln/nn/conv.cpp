// Conv2d.
#include "kiln/nn/conv.h"

#include <cmath>

#include "kiln/nn/init.h"
#include "kiln/ops/nn_ops.h"

namespace kiln::nn {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Generator& gen,
               const Conv2dArgs& args)
    : args_(args) {
  KILN_CHECK(in_channels > 0 && out_channels > 0 && kernel_size > 0, "Conv2d: channels and kernel size must be ",
             "positive, got in ", in_channels, ", out ", out_channels, ", kernel ", kernel_size);
  KILN_CHECK(args.groups > 0 && in_channels % args.groups == 0 && out_channels % args.groups == 0,
             "Conv2d: groups ", args.groups, " must divide in_channels ", in_channels, " and out_channels ",
             out_channels);
  KILN_CHECK(args.stride > 0 && args.dilation > 0 && args.padding >= 0, "Conv2d: invalid stride ", args.stride,
             ", dilation ", args.dilation, " or padding ", args.padding);
  int64_t cin = in_channels / args.groups;
  weight_ = Tensor::empty({out_channels, cin, kernel_size, kernel_size});
  init::kaiming_uniform_(weight_, gen, std::sqrt(5.0));
  register_parameter("weight", weight_);
  if (args.bias) {
    double bound = 1.0 / std::sqrt(static_cast<double>(cin * kernel_size * kernel_size));
    bias_ = Tensor::empty({out_channels});
    init::uniform_(bias_, gen, -bound, bound);
    register_parameter("bias", bias_);
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  ops::Conv2dOptions opt;
  opt.stride = {args_.stride, args_.stride};
  opt.padding = {args_.padding, args_.padding};
  opt.dilation = {args_.dilation, args_.dilation};
  opt.groups = args_.groups;
  return ops::conv2d(x, weight_, bias_, opt);
}

}  // namespace kiln::nn
