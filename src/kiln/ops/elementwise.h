// Elementwise operators: binary ones broadcast (NumPy rules) and promote dtypes; unary float ops
// run in f32/f64. Every op here is differentiable where the math allows. In-place forms (suffix
// _) are for optimisers and initialisers: they refuse tensors autograd is tracking.
#pragma once

#include <optional>

#include "kiln/core/tensor.h"

namespace kiln::ops {

// ---- binary arithmetic (broadcasting, type promotion) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
// A scalar operand takes the tensor's dtype (an integer tensor with a fractional scalar becomes f32).
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor pow(const Tensor& a, double exponent);
Tensor rsub(double a, const Tensor& b);  // a - b
Tensor rdiv(double a, const Tensor& b);  // a / b

// ---- comparisons: results are bool, never differentiable ----
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
Tensor logical_not(const Tensor& a);

// where(cond, a, b): cond is bool; a and b broadcast with it. Gradient flows to a and b.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// ---- unary ----
Tensor neg(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
// ReLU's backward as one fused pass (not recorded): g where y > 0, else 0. y may be relu's input
// or its output (both are positive at the same places), so fused linear+relu needs no extra copy.
Tensor relu_backward_from_output(const Tensor& g, const Tensor& y);
enum class GeluApprox { none, tanh };  // none: x * Phi(x) with erf; tanh: the GPT-2 approximation
Tensor gelu(const Tensor& x, GeluApprox approx = GeluApprox::none);
Tensor silu(const Tensor& x);
Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi);

// ---- conversion and copies (differentiable between float dtypes) ----
Tensor to(const Tensor& x, DType dtype);
Tensor contiguous(const Tensor& x);
Tensor clone(const Tensor& x);

// ---- in-place (bump the version counter; refuse autograd-tracked tensors in grad mode) ----
Tensor& add_(Tensor& t, const Tensor& other, double alpha = 1.0);  // t += alpha * other
Tensor& mul_(Tensor& t, double s);
Tensor& mul_(Tensor& t, const Tensor& other);
Tensor& zero_(Tensor& t);
Tensor& fill_(Tensor& t, double v);
Tensor& copy_(Tensor& dst, const Tensor& src);  // src broadcasts to dst

}  // namespace kiln::ops

namespace kiln {
// Operators live in kiln (Tensor's namespace) so argument-dependent lookup finds them.
inline Tensor operator+(const Tensor& a, const Tensor& b) { return ops::add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return ops::sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return ops::mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return ops::div(a, b); }
inline Tensor operator+(const Tensor& a, double b) { return ops::add(a, b); }
inline Tensor operator-(const Tensor& a, double b) { return ops::sub(a, b); }
inline Tensor operator*(const Tensor& a, double b) { return ops::mul(a, b); }
inline Tensor operator/(const Tensor& a, double b) { return ops::div(a, b); }
inline Tensor operator+(double a, const Tensor& b) { return ops::add(b, a); }
inline Tensor operator-(double a, const Tensor& b) { return ops::rsub(a, b); }
inline Tensor operator*(double a, const Tensor& b) { return ops::mul(b, a); }
inline Tensor operator/(double a, const Tensor& b) { return ops::rdiv(a, b); }
inline Tensor operator-(const Tensor& a) { return ops::neg(a); }
}  // namespace kiln
