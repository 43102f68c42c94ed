// Forward-only N-d (1, 2 or 3 spatial dims) convolution and pooling with ONNX semantics, for the
// imported graphs that the 2-d fast paths (conv2d, max_pool2d, ...) do not cover: 3-d Conv,
// ConvTranspose, MaxPool and AveragePool, dilated max pooling, and MaxPool's Indices output.
// Written for conformance, not speed: im2col/col2im around the GEMM, plain window loops for pooling.
// f32 and f64; f16 and bf16 compute in f32.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::ops {

enum class AutoPad { notset, valid, same_upper, same_lower };
AutoPad auto_pad_from_name(std::string_view name);  // "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"

// ONNX's spatial attributes, one entry per spatial dim (empty: ONNX's default). pads uses ONNX's
// layout (begin_0, ..., begin_{k-1}, end_0, ..., end_{k-1}) and is ignored unless auto_pad is notset.
struct SpatialNdOptions {
  std::vector<int64_t> kernel_shape;  // pools: required; conv: empty or checked against W
  std::vector<int64_t> strides;       // default 1
  std::vector<int64_t> dilations;     // default 1
  std::vector<int64_t> pads;          // default 0
  AutoPad auto_pad = AutoPad::notset;
  int64_t group = 1;                   // conv, conv_transpose
  bool ceil_mode = false;              // pools
  bool count_include_pad = false;      // avg_pool_nd
  int64_t storage_order = 0;           // max_pool_nd indices: 0 row-major, 1 column-major (spatial part)
  std::vector<int64_t> output_padding; // conv_transpose_nd, default 0
  std::vector<int64_t> output_shape;   // conv_transpose_nd: spatial output size (sets the pads)
};

// x (N, C, d...), w (M, C / group, k...), b (M) or undefined -> (N, M, o...) with
// o = floor((d + pad_begin + pad_end - ((k - 1) * dilation + 1)) / stride) + 1.
Tensor conv_nd(const Tensor& x, const Tensor& w, const Tensor& b, const SpatialNdOptions& o);

// x (N, C, d...), w (C, M / group, k...), b (M) or undefined -> (N, M, o...) with
// o = stride * (d - 1) + output_padding + (k - 1) * dilation + 1 - pad_begin - pad_end, the pads
// derived from output_shape (or auto_pad SAME: output_shape = d * stride) when given.
Tensor conv_transpose_nd(const Tensor& x, const Tensor& w, const Tensor& b, const SpatialNdOptions& o);

struct MaxPoolNdResult {
  Tensor values;   // (N, C, o...), x's dtype
  Tensor indices;  // (N, C, o...) i64, or undefined when not asked for
};
// Max over each (dilated) window; padding never wins. indices (when with_indices) are ONNX's:
// the position of the maximum in the flattened x, batch and channel included, with the spatial
// part row-major (storage_order 0) or column-major (1); the first maximum wins ties. Float and
// integer inputs.
MaxPoolNdResult max_pool_nd(const Tensor& x, const SpatialNdOptions& o, bool with_indices = false);

// Mean over each (dilated) window: of its cells inside x, or (count_include_pad) of its cells
// inside the explicitly padded x; the overhang that ceil_mode adds never counts.
Tensor avg_pool_nd(const Tensor& x, const SpatialNdOptions& o);

}  // namespace kiln::ops
