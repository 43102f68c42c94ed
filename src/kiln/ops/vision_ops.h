// Forward-only detection and sampling ops with ONNX semantics: GridSample (opset 16, 2-d),
// RoiAlign (opset 16), NonMaxSuppression (opset 11) and MaxUnpool (opset 11). Float ops take f32
// or f64 (f16/bf16 through f32) and return the input's dtype; interpolation runs in f64. Nothing
// here records autograd history.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::ops {

enum class GridSampleMode { bilinear, nearest, bicubic };
enum class GridSamplePadding { zeros, border, reflection };
GridSampleMode grid_sample_mode_from_name(std::string_view name);        // "bilinear", "nearest", "bicubic"
GridSamplePadding grid_sample_padding_from_name(std::string_view name);  // "zeros", "border", "reflection"

// x (N, C, H, W), grid (N, Ho, Wo, 2) of (x, y) in [-1, 1] (-1: the left/top edge) -> (N, C, Ho, Wo):
// x sampled at each grid point (PyTorch's grid_sample). align_corners: -1 and 1 are the centres of
// the corner pixels, else their outer edges. Points outside read zeros, the clamped border, or the
// image reflected at its edges; bicubic (A = -0.75) pads each of its 16 taps that way, nearest
// rounds half to even.
Tensor grid_sample(const Tensor& x, const Tensor& grid, GridSampleMode mode = GridSampleMode::bilinear,
                   GridSamplePadding padding = GridSamplePadding::zeros, bool align_corners = false);

// x (N, C, H, W), rois (R, 4) of (x1, y1, x2, y2) in input coordinates before spatial_scale,
// batch_indices (R) -> (R, C, output_height, output_width): each bin the average (or max) of
// sampling_ratio^2 bilinear samples (0: ceil(roi size / output size) per axis), as onnxruntime.
// half_pixel shifts the roi by -0.5 pixel (opset 16's default); output_half_pixel (the legacy
// mode) does not and makes every roi at least 1x1.
Tensor roi_align(const Tensor& x, const Tensor& rois, const Tensor& batch_indices, int64_t output_height = 1,
                 int64_t output_width = 1, int64_t sampling_ratio = 0, double spatial_scale = 1.0, bool max_mode = false,
                 bool half_pixel = true);

// boxes (B, S, 4), scores (B, K, S) -> i64 (M, 3) rows (batch, class, box): for each batch and class,
// greedy selection in descending score order (ties: lower box index first) of boxes scoring above
// score_threshold, dropping each box whose IoU with a selected one exceeds iou_threshold, at most
// max_output_boxes_per_class per class. center_point_box: boxes are (x_c, y_c, w, h), else two
// opposite corners (y1, x1, y2, x2) in either order.
Tensor non_max_suppression(const Tensor& boxes, const Tensor& scores, int64_t max_output_boxes_per_class = 0,
                           double iou_threshold = 0.0, std::optional<double> score_threshold = std::nullopt,
                           bool center_point_box = false);

// x (N, C, d...) and indices (x's shape, i32/i64: flat positions in the unpooled tensor, as
// MaxPool's Indices output gives them) -> the unpooled tensor: zeros with out[indices[i]] = x[i].
// Its shape is (d - 1) * stride + kernel - pad_begin - pad_end per spatial dim (pads: begin...,
// end...); an output_shape (N, C, d'...) pads it with zeros at the end of each spatial dim.
Tensor max_unpool(const Tensor& x, const Tensor& indices, const std::vector<int64_t>& kernel_shape,
                  const std::vector<int64_t>& strides = {}, const std::vector<int64_t>& pads = {},
                  const std::optional<std::vector<int64_t>>& output_shape = std::nullopt);

}  // namespace kiln::ops
