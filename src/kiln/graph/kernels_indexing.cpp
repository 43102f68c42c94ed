// Graph kernels for the ops of ops/indexing_extra.h: the ONNX operators of the same meaning,
// forward only. Graph form (inputs in ONNX order; attributes by ONNX name, with ONNX's defaults):
//   scatter_elements   (data, indices, updates) axis=0 reduction="none"|"add"|"mul"|"max"|"min"
//   scatter_nd         (data, indices, updates) reduction="none"|...
//   gather_nd          (data, indices) batch_dims=0
//   compress           (input, condition) axis (absent: flattened input)
//   depth_to_space     (input) blocksize mode="DCR"|"CRD"
//   space_to_depth     (input) blocksize
//   reverse_sequence   (input, sequence_lens) batch_axis=1 time_axis=0
//   nonzero            (X) -> i64 (rank, count)
//   unique             (X) axis (absent: flattened) sorted=1 -> (Y, indices, inverse_indices, counts)
//   lrn                (X) size alpha=1e-4 beta=0.75 bias=1
//   mean_variance_norm (X) axes=[0, 2, 3]
//   det                (X)
#include "kiln/graph/kernels.h"
#include "kiln/ops/indexing_extra.h"

namespace kiln::graph {

namespace {

ops::ScatterReduction reduction(const Node& node) {
  std::string name = node.attr_string("reduction", "none");
  if (name != "none" && name != "add" && name != "mul" && name != "max" && name != "min")
    kernel_error(node, detail::concat("unknown reduction '", name, "' (expected none, add, mul, max or min)"));
  return ops::scatter_reduction_from_name(name);
}

std::optional<int64_t> optional_axis(const Node& node) {
  if (!node.has_attr("axis")) return std::nullopt;
  return node.attr_int("axis");
}

std::vector<Tensor> scatter_elements(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::scatter_elements(required_input(node, inputs, 0, "data"), required_input(node, inputs, 1, "indices"),
                                required_input(node, inputs, 2, "updates"), node.attr_int("axis", 0), reduction(node))};
}

std::vector<Tensor> scatter_nd(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::scatter_nd(required_input(node, inputs, 0, "data"), required_input(node, inputs, 1, "indices"),
                          required_input(node, inputs, 2, "updates"), reduction(node))};
}

std::vector<Tensor> gather_nd(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::gather_nd(required_input(node, inputs, 0, "data"), required_input(node, inputs, 1, "indices"),
                         node.attr_int("batch_dims", 0))};
}

std::vector<Tensor> compress(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::compress(required_input(node, inputs, 0, "input"), required_input(node, inputs, 1, "condition"),
                        optional_axis(node))};
}

std::vector<Tensor> depth_to_space(const Node& node, const std::vector<Tensor>& inputs) {
  std::string mode = node.attr_string("mode", "DCR");
  if (mode != "DCR" && mode != "CRD") kernel_error(node, detail::concat("mode must be DCR or CRD, got '", mode, "'"));
  return {ops::depth_to_space(required_input(node, inputs, 0, "input"), node.attr_int("blocksize"), mode == "CRD")};
}

std::vector<Tensor> space_to_depth(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::space_to_depth(required_input(node, inputs, 0, "input"), node.attr_int("blocksize"))};
}

std::vector<Tensor> reverse_sequence(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::reverse_sequence(required_input(node, inputs, 0, "input"),
                                required_input(node, inputs, 1, "sequence_lens"), node.attr_int("batch_axis", 1),
                                node.attr_int("time_axis", 0))};
}

std::vector<Tensor> nonzero(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::nonzero(required_input(node, inputs, 0, "X"))};
}

std::vector<Tensor> unique(const Node& node, const std::vector<Tensor>& inputs) {
  int64_t sorted = node.attr_int("sorted", 1);
  if (sorted != 0 && sorted != 1) kernel_error(node, detail::concat("sorted must be 0 or 1, got ", sorted));
  ops::UniqueResult r = ops::unique(required_input(node, inputs, 0, "X"), optional_axis(node), sorted == 1);
  return {r.values, r.indices, r.inverse_indices, r.counts};
}

std::vector<Tensor> lrn(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::lrn(required_input(node, inputs, 0, "X"), node.attr_int("size"), node.attr_float("alpha", 1e-4),
                   node.attr_float("beta", 0.75), node.attr_float("bias", 1.0))};
}

std::vector<Tensor> mean_variance_norm(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::mean_variance_norm(required_input(node, inputs, 0, "X"), node.attr_ints("axes", {0, 2, 3}))};
}

std::vector<Tensor> det(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::det(required_input(node, inputs, 0, "X"))};
}

}  // namespace

void register_indexing_kernels(KernelTable& t) {
  t.add("scatter_elements", scatter_elements);
  t.add("scatter_nd", scatter_nd);
  t.add("gather_nd", gather_nd);
  t.add("compress", compress);
  t.add("depth_to_space", depth_to_space);
  t.add("space_to_depth", space_to_depth);
  t.add("reverse_sequence", reverse_sequence);
  t.add("nonzero", nonzero);
  t.add("unique", unique);
  t.add("lrn", lrn);
  t.add("mean_variance_norm", mean_variance_norm);
  t.add("det", det);
}

}  // namespace kiln::graph
