// Neural-network operators (the functional forms behind the nn modules): convolution, pooling,
// normalisation, softmax, losses, embedding, dropout, attention. Images are NCHW.
#pragma once

#include <array>

#include "kiln/core/rng.h"
#include "kiln/core/tensor.h"

namespace kiln::ops {

struct Conv2dOptions {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
  // y = max(conv + b, 0), the ReLU fused into the kernel's last pass over y when no gradient is
  // needed (inference, compiled graphs); with autograd it is relu(conv2d(...)).
  bool relu = false;
  // y = max_pool2d(y, {2, 2}) (stride 2, no padding, floor), bitwise. Without autograd
  // (inference, compiled graphs) the direct and Winograd algorithms pool in their last pass, so
  // the full-size convolution output never exists; im2col and f64 convolve chunks of the batch
  // that stay in cache and pool each at once.
  bool max_pool2 = false;
};
// x (N, C, H, W), w (O, C/groups, KH, KW), b (O) or undefined -> (N, O, OH, OW)
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), const Conv2dOptions& opt = {});

// kernel/stride/padding per spatial dim; stride defaults to the kernel size when {0, 0}.
Tensor max_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride = {0, 0},
                  std::array<int64_t, 2> padding = {0, 0});
Tensor avg_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride = {0, 0},
                  std::array<int64_t, 2> padding = {0, 0});  // padding counted in the divisor
Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size);

// x (N, C) or (N, C, H, W). In training, normalises with batch statistics and updates the running
// buffers in place (running = (1-momentum)*running + momentum*batch, unbiased var), as PyTorch.
// weight/bias (C) may be undefined.
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                  Tensor running_var, bool training, double momentum = 0.1, double eps = 1e-5);
// Normalises over the trailing dims given by normalized_shape; weight/bias shaped like them.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps = 1e-5);

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

enum class Reduction { mean, sum, none };
struct CrossEntropyOptions {
  double label_smoothing = 0.0;
  int64_t ignore_index = -100;
  Reduction reduction = Reduction::mean;
};
// logits (N, C) or (N, C, d...); target i64 class indices (N) or (N, d...). Mean is over the
// targets that are not ignore_index, as in PyTorch.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& opt = {});
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, int64_t ignore_index = -100,
                Reduction reduction = Reduction::mean);
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean);
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        Reduction reduction = Reduction::mean);

// weight (V, D), indices integer (any shape) -> (..., D). Out-of-range indices are an IndexError.
Tensor embedding(const Tensor& weight, const Tensor& indices);

// Zeroes each element with probability p and scales the rest by 1/(1-p); identity when not training.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen = default_generator());

// q, k, v (B, H, T, D) -> (B, H, T, D); softmax(q k^T / sqrt(D) + causal mask) v.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal);

}  // namespace kiln::ops
