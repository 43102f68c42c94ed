// Forward-only nn operators that imported (ONNX) inference graphs need: transposed convolution,
// instance normalisation, resize (nearest / N-linear / N-cubic) and padding with reflect/edge modes. They
// follow ONNX semantics (ConvTranspose, InstanceNormalization, Resize, Pad) and record no autograd
// history: their results never require grad.
#pragma once

#include <array>
#include <string_view>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::ops {

struct ConvTranspose2dOptions {
  std::array<int64_t, 2> stride{1, 1};
  // ONNX layout {h_begin, w_begin, h_end, w_end}: crop the full output; a negative pad extends it
  // (ONNX's output_shape larger than the full output gives one).
  std::array<int64_t, 4> pads{0, 0, 0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  std::array<int64_t, 2> output_padding{0, 0};  // extra rows/cols at the high end
  int64_t groups = 1;
};
// x (N, C, H, W), w (C, O/groups, KH, KW), b (O) or undefined -> (N, O, OH, OW) with
//   OH = sh*(H-1) + output_padding_h + dh*(KH-1) + 1 - pad_h_begin - pad_h_end   (OW likewise);
// output positions no input reaches hold the bias. f32 (GEMM + col2im) or f64.
Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(),
                        const ConvTranspose2dOptions& opt = {});

// x (N, C, d...) with at least one spatial dim; scale, bias (C). Each (n, c) slice is normalised
// by its own mean and biased variance: y = scale * (x - mean) / sqrt(var + eps) + bias.
Tensor instance_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, double eps = 1e-5);

enum class ResizeMode { nearest, linear, cubic };
enum class ResizeCoord { half_pixel, pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn, tf_crop_and_resize };
enum class ResizeNearest { round_prefer_floor, round_prefer_ceil, floor, ceil };
struct ResizeOptions {
  ResizeMode mode = ResizeMode::nearest;
  ResizeCoord coord = ResizeCoord::half_pixel;
  ResizeNearest nearest = ResizeNearest::round_prefer_floor;
  double cubic_coeff_a = -0.75;  // cubic only: Keys' a (-0.75 as PyTorch, -0.5 as TensorFlow)
  bool exclude_outside = false;  // linear/cubic: drop taps outside the input and renormalise
  // tf_crop_and_resize only: the crop per dim, (start..., end...) normalised to [0, 1] of the dim,
  // and the value of outputs whose coordinate falls outside the input.
  std::vector<double> roi = {};
  double extrapolation_value = 0.0;
};
// ONNX attribute spellings -> enums; unknown names throw ValueError.
ResizeMode resize_mode_from_name(std::string_view name);
ResizeCoord resize_coord_from_name(std::string_view name);
ResizeNearest resize_nearest_from_name(std::string_view name);

// Resizes every dim of x (any rank). Exactly one of `scales` (one per dim, output size
// floor(in * scale)) and `sizes` (one per dim) is non-empty. With scales the coordinate transform
// uses the given scale; with sizes it uses out/in, as ONNX does. Linear and cubic interpolate
// separably over the dims whose size or scale changes, taps clamped at the borders (ONNX's
// reference implementation); they need f32 or f64. Nearest works for every dtype (a gather).
Tensor resize(const Tensor& x, const std::vector<double>& scales, const std::vector<int64_t>& sizes,
              const ResizeOptions& opt = {});

enum class PadMode { constant, reflect, edge };
PadMode pad_mode_from_name(std::string_view name);  // "constant", "reflect", "edge"
// ONNX Pad: pads = {x1_begin, x2_begin, ..., x1_end, x2_end, ...}, 2 * rank entries; a negative
// pad crops. reflect mirrors about the edge elements (without repeating them; repeated
// reflection when the pad exceeds the dim, as numpy.pad); edge repeats the edge element.
// Any dtype.
Tensor pad_mode(const Tensor& x, const std::vector<int64_t>& pads, double constant_value = 0.0,
                PadMode mode = PadMode::constant);

}  // namespace kiln::ops
