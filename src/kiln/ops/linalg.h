// Matrix products. f32 goes through oneDNN's matmul primitive (about 210 GFLOP/s on this 2-core
// machine versus 170 for OpenBLAS); f64 uses a plain reference loop (gradient checks only).
// Transposed and strided operands are described to oneDNN by their strides: no copies.
#pragma once

#include "kiln/core/tensor.h"

namespace kiln::ops {

// NumPy matmul semantics: 1-d operands are promoted and squeezed back; batch dims broadcast.
Tensor matmul(const Tensor& a, const Tensor& b);
// y = x @ w^T + b with x (..., in), w (out, in), b (out) or undefined.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

}  // namespace kiln::ops
