// More forward-only ops for imported (ONNX) graphs, with ONNX semantics: trigonometric and
// hyperbolic math, a few activations, float classification, structural ops (trilu, one_hot,
// eye_like, hardmax, prod) and the ONNX losses. None records autograd history.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "kiln/core/tensor.h"
#include "kiln/ops/nn_ops.h"
#include "kiln/ops/reduce.h"

namespace kiln::ops {

// ---- unary float math (f32, f64; f16/bf16 compute in f32 and come back in their dtype)
Tensor tan(const Tensor& x);
Tensor sinh(const Tensor& x);
Tensor cosh(const Tensor& x);
Tensor asin(const Tensor& x);  // NaN outside [-1, 1]
Tensor acos(const Tensor& x);  // NaN outside [-1, 1]
Tensor atan(const Tensor& x);
Tensor asinh(const Tensor& x);
Tensor acosh(const Tensor& x);  // NaN below 1
Tensor atanh(const Tensor& x);  // NaN outside [-1, 1], +-inf at +-1
// max(0, x) + min(0, alpha * (e^(x / alpha) - 1)).
Tensor celu(const Tensor& x, double alpha = 1.0);
// x > alpha ? x : 0.
Tensor thresholded_relu(const Tensor& x, double alpha = 1.0);
// x < -lambd ? x + bias : (x > lambd ? x - bias : 0); any numeric dtype, result in x's dtype.
Tensor shrink(const Tensor& x, double lambd = 0.5, double bias = 0.0);

// ---- float classification -> bool (integer inputs are never inf or NaN)
Tensor is_inf(const Tensor& x, bool detect_positive = true, bool detect_negative = true);
Tensor is_nan(const Tensor& x);

// ---- structural
// The upper (j - i >= k) or lower (j - i <= k) triangle of the last two dims, the rest zero;
// any dtype. k > 0 moves the diagonal up (right), k < 0 down.
Tensor trilu(const Tensor& x, int64_t k = 0, bool upper = true);
// Product over dims (empty: every dim), any numeric dtype; an empty reduction gives 1.
Tensor prod(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
// 1 at the first maximum along axis, 0 elsewhere, in x's float dtype. coerce_2d (ONNX opset < 13):
// the max is over all of dims [axis, rank) together, as if x were flattened to 2-d at axis.
Tensor hardmax(const Tensor& x, int64_t axis = -1, bool coerce_2d = false);
// A new axis of size depth at `axis` (in [-r-1, r]): values[1] where the (integer-valued) index
// equals the position, values[0] elsewhere; negative indices count from depth, out-of-range
// ones give a row of values[0]. values: two elements [off, on]; the result has their dtype.
Tensor one_hot(const Tensor& indices, int64_t depth, const Tensor& values, int64_t axis = -1);
// A 2-d tensor of x's shape with ones on diagonal k (j - i == k), zeros elsewhere; of `dtype`
// (x's dtype when not given).
Tensor eye_like(const Tensor& x, int64_t k = 0, std::optional<DType> dtype = std::nullopt);
// The element count of x as a 0-d i64 tensor. The using-declaration keeps core's numel(Shape)
// visible to unqualified calls inside kiln::ops, which ops::numel would otherwise hide.
Tensor numel(const Tensor& x);
using kiln::numel;

// ---- losses with ONNX semantics: the forward of the graph ops nll_loss and cross_entropy as
// ONNX NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss define them (the eager ops.h
// nll_loss/cross_entropy keep PyTorch's rules and autograd).
namespace onnx_loss {
// input (N, C, d1..dk) float, target (N, d1..dk) integer, weight (C) or undefined. Per element
// loss = -input[n, t, d...] * weight[t] with t = target[n, d...]; a target equal to ignore_index
// gives 0 and weighs 0 (it may lie outside [0, C)). Reduction none: (N, d1..dk); sum: a 0-d sum;
// mean: sum / (sum of the weights of the targets not ignored) — NaN when all are ignored.
Tensor nll_loss(const Tensor& input, const Tensor& target, const Tensor& weight, std::optional<int64_t> ignore_index,
                Reduction reduction);
// log_softmax over dim 1, then nll_loss; returns {loss, log_prob (N, C, d1..dk)}.
std::pair<Tensor, Tensor> cross_entropy(const Tensor& scores, const Tensor& labels, const Tensor& weight,
                                        std::optional<int64_t> ignore_index, Reduction reduction);
}  // namespace onnx_loss

}  // namespace kiln::ops
