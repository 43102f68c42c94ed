// Int8 quantization operators with ONNX semantics (QuantizeLinear, DequantizeLinear,
// DynamicQuantizeLinear, MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv), forward only.
// Quantized tensors are u8 or i8; integer products accumulate exactly in int32 (wrapping only
// where ONNX allows int32 overflow). Rounding is to nearest, ties to even, as ONNX requires, and
// requantization multiplies in f32 like ONNX Runtime: y = sat(round(acc * (sa * sb / sy)) + zy).
// Scales are f32 (f64 accepted); zero points have the dtype of the tensor they belong to.
#pragma once

#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::ops {

// y = saturate(round(x / y_scale) + y_zero_point), u8 in [0, 255] or i8 in [-128, 127]; the dtype
// of y is that of y_zero_point (u8 when it is undefined, which also means zero point 0).
// y_scale and y_zero_point: one element (per tensor) or 1-d of x.shape[axis] (per axis).
// x: f32 (or f64, i32, f16, bf16, computed in f32 except f64).
Tensor quantize_linear(const Tensor& x, const Tensor& y_scale, const Tensor& y_zero_point = Tensor(), int64_t axis = 1);

// y = (x - x_zero_point) * x_scale, f32 (f64 when x_scale is f64). x: u8, i8 or i32 (i32 has no
// zero point: it must be undefined or zero). Per tensor or per axis as quantize_linear.
Tensor dequantize_linear(const Tensor& x, const Tensor& x_scale, const Tensor& x_zero_point = Tensor(),
                         int64_t axis = 1);

// ONNX DynamicQuantizeLinear for f32 x: the range [min(x, 0), max(x, 0)] maps onto [0, 255].
//   y_scale = (max - min) / 255  (1 when max == min, i.e. x is all zeros, as ONNX Runtime)
//   y_zero_point = round(saturate(0 - min / y_scale)),  y = saturate(round(x / y_scale) + y_zero_point)
// y_scale (f32) and y_zero_point (u8) are 0-d.
struct DynamicQuantized {
  Tensor y;             // u8, shape of x
  Tensor y_scale;       // f32, 0-d
  Tensor y_zero_point;  // u8, 0-d
};
DynamicQuantized dynamic_quantize_linear(const Tensor& x);

// i32 = (a - a_zero_point) @ (b - b_zero_point) with numpy.matmul broadcasting (1-d operands
// too). a, b: u8 or i8 (independently); each zero point has its operand's dtype. a_zero_point:
// one element, (M) per row, or broadcastable to a's shape with a last dim of 1 ([..., M, 1]);
// b_zero_point: one element, (N) per column, or broadcastable to [..., 1, N]. Undefined: 0.
Tensor matmul_integer(const Tensor& a, const Tensor& b, const Tensor& a_zero_point = Tensor(),
                      const Tensor& b_zero_point = Tensor());

// y = saturate(round((a - a_zp) @ (b - b_zp) * a_scale * b_scale / y_scale) + y_zp); scale and zero
// point of a are per tensor or per row, of b per tensor or per column (shapes as in
// matmul_integer); y_scale and y_zero_point are per tensor. y has y_zero_point's dtype.
Tensor qlinear_matmul(const Tensor& a, const Tensor& a_scale, const Tensor& a_zero_point, const Tensor& b,
                      const Tensor& b_scale, const Tensor& b_zero_point, const Tensor& y_scale,
                      const Tensor& y_zero_point);

// Convolution attributes for any number of spatial dims k (ONNX Conv layout).
struct QuantConvOptions {
  std::vector<int64_t> strides;    // k entries; empty: all 1
  std::vector<int64_t> pads;       // 2k entries {d1_begin, ..., dk_begin, d1_end, ..., dk_end}; empty: all 0
  std::vector<int64_t> dilations;  // k entries; empty: all 1
  int64_t groups = 1;
};

// x (N, C, d1..dk) u8/i8, w (M, C/groups, k1..kk) u8/i8 -> i32 (N, M, o1..ok).
// x_zero_point: one element; w_zero_point: one element or (M) per output channel. Padding
// contributes zero to the sum (it is x's zero point in the quantized domain).
Tensor conv_integer(const Tensor& x, const Tensor& w, const Tensor& x_zero_point = Tensor(),
                    const Tensor& w_zero_point = Tensor(), const QuantConvOptions& opt = {});

// y = saturate(round((conv_integer(x, w, x_zp, w_zp) + bias) * x_scale * w_scale[m] / y_scale) + y_zp).
// x_scale, x_zp, y_scale, y_zp per tensor; w_scale, w_zp per tensor or (M) per output channel;
// bias: i32 (M) or undefined. y has y_zero_point's dtype.
Tensor qlinear_conv(const Tensor& x, const Tensor& x_scale, const Tensor& x_zero_point, const Tensor& w,
                    const Tensor& w_scale, const Tensor& w_zero_point, const Tensor& y_scale,
                    const Tensor& y_zero_point, const Tensor& bias = Tensor(), const QuantConvOptions& opt = {});

}  // namespace kiln::ops
