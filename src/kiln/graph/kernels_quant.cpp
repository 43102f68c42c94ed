// Graph kernels for the quant ops (ops/quant_ops.h) and for the forward-only nn ops of imported
// graphs (ops/inference_nn.h). Graph form = the ONNX node: inputs in ONNX order (absent optional
// inputs undefined), attributes under their ONNX names:
//   quantize_linear       (x, y_scale, [y_zero_point])                  {axis=1}
//   dequantize_linear     (x, x_scale, [x_zero_point])                  {axis=1}
//   dynamic_quantize_linear (x) -> (y, y_scale, y_zero_point)
//   matmul_integer        (a, b, [a_zero_point], [b_zero_point])
//   conv_integer          (x, w, [x_zero_point], [w_zero_point])        {conv attributes}
//   qlinear_matmul        (a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp)
//   qlinear_conv          (x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, [B])  {conv attributes}
//   conv_transpose2d      (x, w, [b])  {strides, pads, dilations, group, output_padding, output_shape,
//                                       auto_pad, kernel_shape}; 1-d and 2-d spatial
//   instance_norm         (x, scale, bias)                              {epsilon=1e-5}
//   resize                (x, [roi], [scales], [sizes])  {mode, coordinate_transformation_mode,
//                          nearest_mode, cubic_coeff_a, exclude_outside, axes, extrapolation_value
//                          (tf_crop_and_resize, which reads roi)}; two inputs
//                          (x, scales) is the opset-10 form
//   pad_mode              (x, pads, [constant_value], [axes])           {mode="constant"}
//                         (also the opset < 11 form: x alone with attributes pads and value)
// Conv attributes: strides, pads (ONNX begin.../end... layout), dilations, group, auto_pad
// (NOTSET, VALID, SAME_UPPER, SAME_LOWER), kernel_shape (checked against w).
#include <cmath>

#include "kiln/core/error.h"
#include "kiln/graph/kernels.h"
#include "kiln/ops/inference_nn.h"
#include "kiln/ops/quant_ops.h"

namespace kiln::graph {

namespace {

const Tensor& required(const std::vector<Tensor>& in, size_t i, const Node& node, std::string_view what) {
  if (i >= in.size() || !in[i].defined()) kernel_error(node, detail::concat(what, " (input ", i, ") is missing"));
  return in[i];
}

// Checks kernel_shape (when given) against the weight's spatial dims.
void check_kernel_shape(const Node& node, const Tensor& w) {
  if (!node.has_attr("kernel_shape")) return;
  const std::vector<int64_t>& ks = node.attr_ints("kernel_shape");
  if (static_cast<int64_t>(ks.size()) != w.dim() - 2 || !std::equal(ks.begin(), ks.end(), w.shape().begin() + 2))
    kernel_error(node, detail::concat("kernel_shape ", shape_str(ks), " does not match weight ", shape_str(w.shape())));
}

// Strides, dilations and pads of a (forward) convolution over k spatial dims, with auto_pad resolved:
// SAME_* pads so that out = ceil(in / stride), the odd pixel at the end (UPPER) or the start (LOWER).
ops::QuantConvOptions conv_attrs(const Node& node, const Tensor& x, const Tensor& w) {
  check_kernel_shape(node, w);
  const size_t k = static_cast<size_t>(std::max<int64_t>(0, x.dim() - 2));
  ops::QuantConvOptions o;
  o.strides = node.attr_ints("strides", std::vector<int64_t>(k, 1));
  o.dilations = node.attr_ints("dilations", std::vector<int64_t>(k, 1));
  o.pads = node.attr_ints("pads", std::vector<int64_t>(2 * k, 0));
  o.groups = node.attr_int("group", 1);
  const std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
  if (auto_pad == "VALID") {
    o.pads.assign(2 * k, 0);
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    if (o.strides.size() != k || o.dilations.size() != k || w.dim() != x.dim())
      kernel_error(node, "strides/dilations do not match the input's spatial rank");
    o.pads.assign(2 * k, 0);
    for (size_t i = 0; i < k; ++i) {
      const int64_t in = x.shape()[2 + i], s = o.strides[i];
      const int64_t out = (in + s - 1) / s, span = o.dilations[i] * (w.shape()[2 + i] - 1) + 1;
      const int64_t total = std::max<int64_t>(0, (out - 1) * s + span - in);
      o.pads[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      o.pads[i + k] = total - o.pads[i];
    }
  } else if (auto_pad != "NOTSET") {
    kernel_error(node, detail::concat("unknown auto_pad \"", auto_pad, "\""));
  }
  return o;
}

// ---------------------------------------------------------------- quant ops

std::vector<Tensor> quantize_linear_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {ops::quantize_linear(required(in, 0, node, "x"), required(in, 1, node, "y_scale"), optional_input(in, 2),
                               node.attr_int("axis", 1))};
}

std::vector<Tensor> dequantize_linear_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {ops::dequantize_linear(required(in, 0, node, "x"), required(in, 1, node, "x_scale"), optional_input(in, 2),
                                 node.attr_int("axis", 1))};
}

std::vector<Tensor> dynamic_quantize_linear_kernel(const Node& node, const std::vector<Tensor>& in) {
  ops::DynamicQuantized q = ops::dynamic_quantize_linear(required(in, 0, node, "x"));
  return {q.y, q.y_scale, q.y_zero_point};
}

std::vector<Tensor> matmul_integer_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {ops::matmul_integer(required(in, 0, node, "A"), required(in, 1, node, "B"), optional_input(in, 2),
                              optional_input(in, 3))};
}

std::vector<Tensor> conv_integer_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required(in, 0, node, "x");
  const Tensor& w = required(in, 1, node, "w");
  return {ops::conv_integer(x, w, optional_input(in, 2), optional_input(in, 3), conv_attrs(node, x, w))};
}

std::vector<Tensor> qlinear_matmul_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {ops::qlinear_matmul(required(in, 0, node, "a"), required(in, 1, node, "a_scale"), optional_input(in, 2),
                              required(in, 3, node, "b"), required(in, 4, node, "b_scale"), optional_input(in, 5),
                              required(in, 6, node, "y_scale"), optional_input(in, 7))};
}

std::vector<Tensor> qlinear_conv_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required(in, 0, node, "x");
  const Tensor& w = required(in, 3, node, "w");
  return {ops::qlinear_conv(x, required(in, 1, node, "x_scale"), optional_input(in, 2), w,
                            required(in, 4, node, "w_scale"), optional_input(in, 5), required(in, 6, node, "y_scale"),
                            optional_input(in, 7), optional_input(in, 8), conv_attrs(node, x, w))};
}

// ---------------------------------------------------------------- inference nn ops

// ONNX ConvTranspose pads: explicit, or from output_shape / auto_pad SAME_* (out = in * stride):
//   total = stride*(in-1) + output_padding + dilation*(k-1) + 1 - out,
// begin = floor(total/2) for SAME_UPPER and total - floor(total/2) otherwise (the ONNX spec's split;
// floor division as in ONNX's reference implementation, so a negative total extends the output).
std::vector<Tensor> conv_transpose2d_kernel(const Node& node, const std::vector<Tensor>& in) {
  Tensor x = required(in, 0, node, "X");
  Tensor w = required(in, 1, node, "W");
  const Tensor b = optional_input(in, 2);
  const int64_t k = x.dim() - 2;
  if (k != 1 && k != 2)
    throw NotImplementedError(detail::concat("node '", node.name, "' (conv_transpose2d): ", k,
                                             "-d transposed convolution is not implemented (1-d and 2-d are)"));
  if (w.dim() != x.dim())
    kernel_error(
        node, detail::concat("weight ", shape_str(w.shape()), " and input ", shape_str(x.shape()), " differ in rank"));
  check_kernel_shape(node, w);
  const size_t ku = static_cast<size_t>(k);
  std::vector<int64_t> strides = node.attr_ints("strides", std::vector<int64_t>(ku, 1));
  std::vector<int64_t> dil = node.attr_ints("dilations", std::vector<int64_t>(ku, 1));
  std::vector<int64_t> outpad = node.attr_ints("output_padding", std::vector<int64_t>(ku, 0));
  std::vector<int64_t> pads = node.attr_ints("pads", std::vector<int64_t>(2 * ku, 0));
  if (strides.size() != ku || dil.size() != ku || outpad.size() != ku || pads.size() != 2 * ku)
    kernel_error(node, detail::concat("strides, dilations, output_padding need ", k, " entries and pads ", 2 * k));
  const std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
  std::vector<int64_t> out_shape = node.attr_ints("output_shape", {});
  if (out_shape.size() == ku + 2) out_shape.erase(out_shape.begin(), out_shape.begin() + 2);  // full shape given
  if (out_shape.empty() && (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER"))
    for (size_t i = 0; i < ku; ++i) out_shape.push_back(x.shape()[2 + i] * strides[i]);
  if (auto_pad == "VALID")
    pads.assign(2 * ku, 0);
  else if (auto_pad != "NOTSET" && auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER")
    kernel_error(node, detail::concat("unknown auto_pad \"", auto_pad, "\""));
  if (!out_shape.empty()) {
    if (out_shape.size() != ku) kernel_error(node, detail::concat("output_shape needs ", k, " entries"));
    for (size_t i = 0; i < ku; ++i) {
      const int64_t total =
          strides[i] * (x.shape()[2 + i] - 1) + outpad[i] + dil[i] * (w.shape()[2 + i] - 1) + 1 - out_shape[i];
      const int64_t half = total >= 0 ? total / 2 : -((-total + 1) / 2);  // floor(total / 2)
      pads[i] = auto_pad == "SAME_UPPER" ? half : total - half;
      pads[i + ku] = total - pads[i];
    }
  }
  ops::ConvTranspose2dOptions o;
  o.groups = node.attr_int("group", 1);
  if (k == 1) {  // as 2-d with a height of one
    x = x.detach().as_strided({x.shape()[0], x.shape()[1], 1, x.shape()[2]}, {x.stride(0), x.stride(1), 0, x.stride(2)},
                              x.offset());
    w = w.detach().as_strided({w.shape()[0], w.shape()[1], 1, w.shape()[2]}, {w.stride(0), w.stride(1), 0, w.stride(2)},
                              w.offset());
    o.stride = {1, strides[0]}, o.dilation = {1, dil[0]}, o.output_padding = {0, outpad[0]};
    o.pads = {0, pads[0], 0, pads[1]};
    Tensor y = ops::conv_transpose2d(x, w, b, o);
    return {
        y.as_strided({y.shape()[0], y.shape()[1], y.shape()[3]}, {y.stride(0), y.stride(1), y.stride(3)}, y.offset())};
  }
  o.stride = {strides[0], strides[1]}, o.dilation = {dil[0], dil[1]}, o.output_padding = {outpad[0], outpad[1]};
  o.pads = {pads[0], pads[1], pads[2], pads[3]};
  return {ops::conv_transpose2d(x, w, b, o)};
}

std::vector<Tensor> instance_norm_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {ops::instance_norm(required(in, 0, node, "input"), required(in, 1, node, "scale"), required(in, 2, node, "B"),
                             node.attr_float("epsilon", 1e-5))};
}

std::vector<Tensor> resize_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required(in, 0, node, "X");
  // Opset 10: (X, scales). Opset 11+: (X, roi, scales, sizes); roi matters only to
  // tf_crop_and_resize.
  Tensor scales_t = in.size() == 2 ? in[1] : optional_input(in, 2);
  Tensor sizes_t = in.size() == 2 ? Tensor() : optional_input(in, 3);
  if (scales_t.defined() && scales_t.numel() == 0) scales_t = Tensor();
  if (sizes_t.defined() && sizes_t.numel() == 0) sizes_t = Tensor();
  if (scales_t.defined() == sizes_t.defined()) kernel_error(node, "exactly one of scales and sizes must be given");
  if (node.attr_int("antialias", 0) != 0)
    throw NotImplementedError(detail::concat("node '", node.name, "' (resize): antialias is not implemented"));
  if (node.attr_string("keep_aspect_ratio_policy", "stretch") != "stretch")
    throw NotImplementedError(
        detail::concat("node '", node.name, "' (resize): keep_aspect_ratio_policy other than stretch"));
  std::vector<double> scales;
  std::vector<int64_t> sizes;
  if (scales_t.defined()) {
    if (!is_floating(scales_t.dtype()) || scales_t.dim() != 1)
      kernel_error(node, detail::concat("scales must be a 1-d float tensor, got ", scales_t.str()));
    scales = scales_t.to_vector<double>();
  } else {
    sizes = int_values(sizes_t, node, "sizes");
  }
  // Opset 18 axes: scales/sizes name only these dims; the others keep their size.
  if (node.has_attr("axes")) {
    const std::vector<int64_t>& axes = node.attr_ints("axes");
    const size_t given = scales.empty() ? sizes.size() : scales.size();
    if (axes.size() != given) kernel_error(node, "axes and scales/sizes differ in length");
    std::vector<double> full_scales(scales.empty() ? 0 : static_cast<size_t>(x.dim()), 1.0);
    std::vector<int64_t> full_sizes(sizes.empty() ? Shape() : x.shape());
    for (size_t i = 0; i < axes.size(); ++i) {
      const int64_t a = normalize_axis(axes[i], x.dim(), node);
      if (!scales.empty())
        full_scales[a] = scales[i];
      else
        full_sizes[a] = sizes[i];
    }
    scales = std::move(full_scales), sizes = std::move(full_sizes);
  }
  ops::ResizeOptions o;
  o.mode = ops::resize_mode_from_name(node.attr_string("mode", "nearest"));
  o.coord = ops::resize_coord_from_name(node.attr_string("coordinate_transformation_mode", "half_pixel"));
  o.nearest = ops::resize_nearest_from_name(node.attr_string("nearest_mode", "round_prefer_floor"));
  o.cubic_coeff_a = node.attr_float("cubic_coeff_a", -0.75);
  o.exclude_outside = node.attr_int("exclude_outside", 0) != 0;
  if (o.coord == ops::ResizeCoord::tf_crop_and_resize) {
    const Tensor roi = in.size() > 2 ? optional_input(in, 1) : Tensor();
    if (!roi.defined() || !is_floating(roi.dtype()) || roi.dim() != 1)
      kernel_error(node, "tf_crop_and_resize needs roi, a 1-d float tensor");
    o.roi = roi.to_vector<double>();
    o.extrapolation_value = node.attr_float("extrapolation_value", 0.0);
  }
  return {ops::resize(x, scales, sizes, o)};
}

std::vector<Tensor> pad_mode_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required(in, 0, node, "data");
  // Before opset 11 pads and value were attributes; accepted here too when the inputs are absent.
  const bool pads_attr = !optional_input(in, 1).defined() && node.has_attr("pads");
  std::vector<int64_t> pads =
      pads_attr ? node.attr_ints("pads") : int_values(required(in, 1, node, "pads"), node, "pads");
  const Tensor value_t = optional_input(in, 2);
  const double value = value_t.defined() && value_t.numel() > 0 ? scalar_value(value_t, node, "constant_value")
                                                                : node.attr_float("value", 0.0);
  const Tensor axes_t = optional_input(in, 3);
  if (axes_t.defined()) {  // opset 18: pads cover only these axes
    const std::vector<int64_t> axes = int_values(axes_t, node, "axes");
    if (pads.size() != 2 * axes.size()) kernel_error(node, "pads must have two entries per axis in axes");
    std::vector<int64_t> full(static_cast<size_t>(2 * x.dim()), 0);
    for (size_t i = 0; i < axes.size(); ++i) {
      const int64_t a = normalize_axis(axes[i], x.dim(), node);
      full[a] = pads[i];
      full[a + x.dim()] = pads[i + axes.size()];
    }
    pads = std::move(full);
  }
  return {ops::pad_mode(x, pads, value, ops::pad_mode_from_name(node.attr_string("mode", "constant")))};
}

}  // namespace

void register_quant_kernels(KernelTable& t) {
  t.add("quantize_linear", quantize_linear_kernel);
  t.add("dequantize_linear", dequantize_linear_kernel);
  t.add("dynamic_quantize_linear", dynamic_quantize_linear_kernel);
  t.add("matmul_integer", matmul_integer_kernel);
  t.add("conv_integer", conv_integer_kernel);
  t.add("qlinear_matmul", qlinear_matmul_kernel);
  t.add("qlinear_conv", qlinear_conv_kernel);
  t.add("conv_transpose2d", conv_transpose2d_kernel);
  t.add("instance_norm", instance_norm_kernel);
  t.add("resize", resize_kernel);
  t.add("pad_mode", pad_mode_kernel);
}

}  // namespace kiln::graph
