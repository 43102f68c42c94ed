// Graph kernels for the optimiser steps of ops/training_ops.h (ONNX ai.onnx.preview.training).
// Graph form (ONNX's variadic inputs and outputs, n parameter tensors):
//   adagrad  (R, T, X1..Xn, G1..Gn, H1..Hn) decay_factor=0 epsilon=1e-6 norm_coefficient=0
//            -> (X1_new..Xn_new, H1_new..Hn_new)
//   momentum (R, T, X1..Xn, G1..Gn, V1..Vn) alpha beta norm_coefficient mode="standard"|"nesterov"
//            -> (X_new..., V_new...)
//   adam     (R, T, X1..Xn, G1..Gn, V1..Vn, H1..Hn) alpha=0.9 beta=0.999 epsilon=1e-6
//            norm_coefficient=0 norm_coefficient_post=0 -> (X_new..., V_new..., H_new...)
#include "kiln/graph/kernels.h"
#include "kiln/ops/training_ops.h"

namespace kiln::graph {

namespace {

// Inputs 2.. split into `lists` equal lists (X, G, state...); every tensor must be present.
std::vector<std::vector<Tensor>> split_lists(const Node& node, const std::vector<Tensor>& inputs, size_t lists) {
  if (inputs.size() < 2 + lists || (inputs.size() - 2) % lists != 0)
    kernel_error(node, detail::concat("expects R, T and ", lists, " lists of n tensors each, got ", inputs.size(),
                                      " inputs"));
  const size_t n = (inputs.size() - 2) / lists;
  std::vector<std::vector<Tensor>> out(lists);
  for (size_t j = 0; j < lists; ++j)
    for (size_t k = 0; k < n; ++k) out[j].push_back(required_input(node, inputs, 2 + j * n + k, "tensor"));
  return out;
}

double required_float(const Node& node, std::string_view name) {
  if (!node.has_attr(name)) kernel_error(node, detail::concat("attribute ", name, " is required"));
  return node.attr_float(name);
}

std::vector<Tensor> adagrad(const Node& node, const std::vector<Tensor>& inputs) {
  auto l = split_lists(node, inputs, 3);
  return ops::adagrad(required_input(node, inputs, 0, "R"), required_input(node, inputs, 1, "T"), l[0], l[1], l[2],
                      node.attr_float("decay_factor", 0.0), node.attr_float("epsilon", 1e-6),
                      node.attr_float("norm_coefficient", 0.0));
}

std::vector<Tensor> momentum(const Node& node, const std::vector<Tensor>& inputs) {
  auto l = split_lists(node, inputs, 3);
  std::string mode = node.attr_string("mode", "");
  if (mode != "standard" && mode != "nesterov")
    kernel_error(node, detail::concat("mode must be standard or nesterov, got '", mode, "'"));
  return ops::momentum(required_input(node, inputs, 0, "R"), required_input(node, inputs, 1, "T"), l[0], l[1], l[2],
                       required_float(node, "alpha"), required_float(node, "beta"),
                       required_float(node, "norm_coefficient"), mode == "nesterov");
}

std::vector<Tensor> adam(const Node& node, const std::vector<Tensor>& inputs) {
  auto l = split_lists(node, inputs, 4);
  return ops::adam(required_input(node, inputs, 0, "R"), required_input(node, inputs, 1, "T"), l[0], l[1], l[2], l[3],
                   node.attr_float("alpha", 0.9), node.attr_float("beta", 0.999), node.attr_float("epsilon", 1e-6),
                   node.attr_float("norm_coefficient", 0.0), node.attr_float("norm_coefficient_post", 0.0));
}

}  // namespace

void register_training_kernels(KernelTable& t) {
  t.add("adagrad", adagrad);
  t.add("momentum", momentum);
  t.add("adam", adam);
}

}  // namespace kiln::graph
