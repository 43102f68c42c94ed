// Forward-only ops that imported (ONNX) inference graphs need, with ONNX semantics. None records
// autograd history: their results are plain tensors even when an input requires grad.
// Float math runs in f32 or f64; f16/bf16 inputs compute in f32 and come back in their dtype.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::ops {

// ---- unary float math (f32, f64; f16/bf16 through f32)
Tensor erf(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double alpha = 0.01);                  // x < 0 ? alpha * x : x
Tensor hard_sigmoid(const Tensor& x, double alpha = 0.2, double beta = 0.5);  // clamp(alpha * x + beta, 0, 1)
Tensor hard_swish(const Tensor& x);                                       // x * hard_sigmoid(x, 1/6, 0.5)
Tensor elu(const Tensor& x, double alpha = 1.0);                          // x < 0 ? alpha * (e^x - 1) : x
// gamma * (x <= 0 ? alpha * (e^x - 1) : x); ONNX's defaults (the self-normalising constants).
Tensor selu(const Tensor& x, double alpha = 1.67326319217681884765625, double gamma = 1.05070102214813232421875);
Tensor softplus(const Tensor& x);    // log(1 + e^x), without overflow for large x
Tensor softsign(const Tensor& x);    // x / (1 + |x|)
Tensor reciprocal(const Tensor& x);  // 1 / x
Tensor floor(const Tensor& x);
Tensor ceil(const Tensor& x);
Tensor round(const Tensor& x);       // halves to even, as ONNX Round (and NumPy)
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
// -1, 0 or 1 in x's dtype (any numeric dtype; NaN stays NaN).
Tensor sign(const Tensor& x);

// ---- binary, NumPy broadcasting
// Bool in, bool out (other dtypes are read as "nonzero").
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
Tensor logical_xor(const Tensor& a, const Tensor& b);
// fmod = false: integer remainder with the sign of the divisor (Python's %); floats are
// rejected, as in ONNX. fmod = true: C fmod, the sign of the dividend (floats and integers).
// An integer zero divisor is a ValueError.
Tensor mod(const Tensor& a, const Tensor& b, bool fmod = false);
// x < 0 ? slope * x : x, slope broadcast to x's shape (ONNX unidirectional broadcasting).
Tensor prelu(const Tensor& x, const Tensor& slope);

// ---- shape-producing and structural ops
// x repeated repeats[d] times along each dim d (one non-negative repeat per dim).
Tensor tile(const Tensor& x, const std::vector<int64_t>& repeats);
// start, start + delta, ... while < limit (> limit for negative delta); three one-element
// tensors of one dtype, which the result has: max(ceil((limit - start) / delta), 0) elements.
Tensor range(const Tensor& start, const Tensor& limit, const Tensor& delta);
// Running sums along axis; exclusive leaves out the element itself, reverse sums from the end.
Tensor cumsum(const Tensor& x, int64_t axis, bool exclusive = false, bool reverse = false);
// Einstein summation over any number of operands of one dtype ("ij,jk->ik", "bhid,bhjd->bhij",
// "ii->i", "...ij,...jk->...ik", implicit output "ij,jk"). Operands are contracted pairwise,
// left to right, each pair as one batched matmul after a permute/reshape.
Tensor einsum(std::string_view equation, const std::vector<Tensor>& operands);
// x's shape as a 1-d i64 tensor, dims [start, end) (negative counts from the end, clamped to
// [0, rank], as ONNX Shape-15).
Tensor shape_of(const Tensor& x, int64_t start = 0, std::optional<int64_t> end = std::nullopt);
// A tensor of the shape given by a 1-d integer tensor, filled with value's single element and
// of value's dtype; an undefined value means f32 zero. An empty shape gives a scalar.
Tensor constant_of_shape(const Tensor& shape, const Tensor& value = Tensor());

}  // namespace kiln::ops
