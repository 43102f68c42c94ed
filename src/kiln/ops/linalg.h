// Matrix products. f32 goes through Kiln's packed GEMM (cpu/gemm.h); f64 uses a plain reference
// loop (gradient checks only). Transposed and strided operands are absorbed by the GEMM's
// packing: no copies.
#pragma once

#include "kiln/core/tensor.h"

namespace kiln::ops {

// NumPy matmul semantics: 1-d operands are promoted and squeezed back; batch dims broadcast.
Tensor matmul(const Tensor& a, const Tensor& b);
// y = x @ w^T + b with x (..., in), w (out, in), b (out) or undefined.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

// act(linear(x, w, b)) with the activation applied in the GEMM's epilogue, while each output
// tile is still in registers or L1: one pass over the output instead of two. ReLU is fused in
// training too (its backward needs only the output); GELU is fused when no gradient is needed
// and otherwise computed as linear then gelu (its backward needs the pre-activation).
enum class LinearActivation { none, relu, gelu, gelu_tanh };
Tensor linear_act(const Tensor& x, const Tensor& w, const Tensor& b, LinearActivation act);

}  // namespace kiln::ops
