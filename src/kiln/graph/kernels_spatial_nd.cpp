// Graph kernels for the N-d convolution and pooling ops of ops/spatial_nd.h (1 to 3 spatial dims).
// Graph form = the ONNX node: inputs in ONNX order, attributes under their ONNX names and
// defaults, one entry per spatial dim (pads: begin..., end...):
//   conv_nd           (x, w, [b])  {kernel_shape (checked against w), strides, pads, dilations,
//                                   group=1, auto_pad="NOTSET"}
//   conv_transpose_nd (x, w, [b])  {the conv_nd attributes, output_padding, output_shape (spatial
//                                   sizes, or the full shape)}
//   max_pool_nd       (x)          {kernel_shape, strides, pads, dilations, ceil_mode=0,
//                                   auto_pad="NOTSET", storage_order=0} -> (y, [indices i64])
//                                  (indices computed only when the node has a second output)
//   avg_pool_nd       (x)          {kernel_shape, strides, pads, dilations, ceil_mode=0,
//                                   auto_pad="NOTSET", count_include_pad=0}
// The importer uses them where the 2-d ops (conv2d, conv_transpose2d, max_pool2d, avg_pool2d)
// do not reach: 3 spatial dims, dilated max pooling, MaxPool's Indices output.
#include "kiln/graph/kernels.h"
#include "kiln/ops/spatial_nd.h"

namespace kiln::graph {

namespace {

ops::SpatialNdOptions options(const Node& node) {
  ops::SpatialNdOptions o;
  o.kernel_shape = node.attr_ints("kernel_shape", {});
  o.strides = node.attr_ints("strides", {});
  o.dilations = node.attr_ints("dilations", {});
  o.pads = node.attr_ints("pads", {});
  try {
    o.auto_pad = ops::auto_pad_from_name(node.attr_string("auto_pad", "NOTSET"));
  } catch (const ValueError& e) {
    kernel_error(node, e.what());
  }
  o.group = node.attr_int("group", 1);
  o.ceil_mode = node.attr_int("ceil_mode", 0) != 0;
  o.count_include_pad = node.attr_int("count_include_pad", 0) != 0;
  o.storage_order = node.attr_int("storage_order", 0);
  o.output_padding = node.attr_ints("output_padding", {});
  o.output_shape = node.attr_ints("output_shape", {});
  return o;
}

std::vector<Tensor> conv_nd_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {ops::conv_nd(required_input(node, in, 0, "X"), required_input(node, in, 1, "W"), optional_input(in, 2),
                       options(node))};
}

std::vector<Tensor> conv_transpose_nd_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {ops::conv_transpose_nd(required_input(node, in, 0, "X"), required_input(node, in, 1, "W"),
                                 optional_input(in, 2), options(node))};
}

std::vector<Tensor> max_pool_nd_kernel(const Node& node, const std::vector<Tensor>& in) {
  const ops::SpatialNdOptions o = options(node);
  if (o.kernel_shape.empty()) kernel_error(node, "attribute kernel_shape is required");
  const bool with_indices = node.outputs.size() > 1;
  ops::MaxPoolNdResult r = ops::max_pool_nd(required_input(node, in, 0, "X"), o, with_indices);
  if (with_indices) return {r.values, r.indices};
  return {r.values};
}

std::vector<Tensor> avg_pool_nd_kernel(const Node& node, const std::vector<Tensor>& in) {
  const ops::SpatialNdOptions o = options(node);
  if (o.kernel_shape.empty()) kernel_error(node, "attribute kernel_shape is required");
  return {ops::avg_pool_nd(required_input(node, in, 0, "X"), o)};
}

}  // namespace

void register_spatial_nd_kernels(KernelTable& t) {
  t.add("conv_nd", conv_nd_kernel);
  t.add("conv_transpose_nd", conv_transpose_nd_kernel);
  t.add("max_pool_nd", max_pool_nd_kernel);
  t.add("avg_pool_nd", avg_pool_nd_kernel);
}

}  // namespace kiln::graph
