// Graph kernels for the ops of ops/vision_ops.h, forward only. Graph form (ONNX's inputs and
// attribute names and defaults, opset 16 for GridSample and RoiAlign, 11 for the others):
//   grid_sample         (X, grid) mode="bilinear"|"nearest"|"bicubic" padding_mode="zeros"|"border"|"reflection"
//                       align_corners=0
//   roi_align           (X, rois, batch_indices) mode="avg"|"max" output_height=1 output_width=1
//                       sampling_ratio=0 spatial_scale=1 coordinate_transformation_mode="half_pixel"|"output_half_pixel"
//   non_max_suppression (boxes, scores, [max_output_boxes_per_class], [iou_threshold], [score_threshold])
//                       center_point_box=0 -> i64 (M, 3)
//   max_unpool          (X, I, [output_shape]) kernel_shape strides pads
#include "kiln/graph/kernels.h"
#include "kiln/ops/vision_ops.h"

namespace kiln::graph {

namespace {

bool flag(const Node& node, std::string_view name, int64_t fallback) {
  int64_t v = node.attr_int(name, fallback);
  if (v != 0 && v != 1) kernel_error(node, detail::concat(name, " must be 0 or 1, got ", v));
  return v == 1;
}

std::vector<Tensor> grid_sample(const Node& node, const std::vector<Tensor>& inputs) {
  ops::GridSampleMode mode{};
  ops::GridSamplePadding padding{};
  try {
    mode = ops::grid_sample_mode_from_name(node.attr_string("mode", "bilinear"));
    padding = ops::grid_sample_padding_from_name(node.attr_string("padding_mode", "zeros"));
  } catch (const Error& e) {
    kernel_error(node, e.what());
  }
  return {ops::grid_sample(required_input(node, inputs, 0, "X"), required_input(node, inputs, 1, "grid"), mode,
                           padding, flag(node, "align_corners", 0))};
}

std::vector<Tensor> roi_align(const Node& node, const std::vector<Tensor>& inputs) {
  std::string mode = node.attr_string("mode", "avg");
  if (mode != "avg" && mode != "max") kernel_error(node, detail::concat("mode must be avg or max, got '", mode, "'"));
  std::string ctm = node.attr_string("coordinate_transformation_mode", "half_pixel");
  if (ctm != "half_pixel" && ctm != "output_half_pixel")
    kernel_error(node, detail::concat("coordinate_transformation_mode must be half_pixel or output_half_pixel, got '",
                                      ctm, "'"));
  return {ops::roi_align(required_input(node, inputs, 0, "X"), required_input(node, inputs, 1, "rois"),
                         required_input(node, inputs, 2, "batch_indices"), node.attr_int("output_height", 1),
                         node.attr_int("output_width", 1), node.attr_int("sampling_ratio", 0),
                         node.attr_float("spatial_scale", 1.0), mode == "max", ctm == "half_pixel")};
}

std::vector<Tensor> non_max_suppression(const Node& node, const std::vector<Tensor>& inputs) {
  const Tensor max_boxes = optional_input(inputs, 2), iou = optional_input(inputs, 3), score = optional_input(inputs, 4);
  std::optional<double> score_threshold;
  if (score.defined()) score_threshold = scalar_value(score, node, "score_threshold");
  return {ops::non_max_suppression(
      required_input(node, inputs, 0, "boxes"), required_input(node, inputs, 1, "scores"),
      max_boxes.defined() ? static_cast<int64_t>(scalar_value(max_boxes, node, "max_output_boxes_per_class")) : 0,
      iou.defined() ? scalar_value(iou, node, "iou_threshold") : 0.0, score_threshold, flag(node, "center_point_box", 0))};
}

std::vector<Tensor> max_unpool(const Node& node, const std::vector<Tensor>& inputs) {
  std::optional<std::vector<int64_t>> output_shape;
  if (optional_input(inputs, 2).defined()) output_shape = int_values(inputs[2], node, "output_shape");
  if (!node.has_attr("kernel_shape")) kernel_error(node, "attribute kernel_shape is required");
  return {ops::max_unpool(required_input(node, inputs, 0, "X"), required_input(node, inputs, 1, "I"),
                          node.attr_ints("kernel_shape"), node.attr_ints("strides", {}), node.attr_ints("pads", {}),
                          output_shape)};
}

}  // namespace

void register_vision_kernels(KernelTable& t) {
  t.add("grid_sample", grid_sample);
  t.add("roi_align", roi_align);
  t.add("non_max_suppression", non_max_suppression);
  t.add("max_unpool", max_unpool);
}

}  // namespace kiln::graph
