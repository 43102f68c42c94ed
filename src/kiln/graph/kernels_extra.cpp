// Graph kernels for the ops of ops/inference_extra.h and the ONNX losses. Graph form (inputs in
// ONNX order; attributes by ONNX name and default):
//   tan, sinh, cosh, asin, acos, atan, asinh, acosh, atanh, is_nan: (x)
//   celu (x) alpha=1 | thresholded_relu (x) alpha=1 | shrink (x) lambd=0.5 bias=0
//   is_inf (x) detect_positive=1 detect_negative=1 -> bool
//   trilu (x, [k: one-element integer tensor, default 0]) upper=1
//   prod (x, [axes]) {axes, keepdims=1, noop_with_empty_axes=0}, as the other reductions
//   hardmax (x) axis=-1 coerce_2d=0 (1: ONNX opset < 13, the max over dims [axis, rank) together)
//   one_hot (indices, depth: one-element tensor, values: [off, on]) axis=-1 -> values' dtype
//   eye_like (x) k=0 dtype (a dtype name; default x's dtype)
//   numel (x) -> 0-d i64
//   nll_loss (input (N, C, d...), target (N, d...), [weight (C)]) reduction="mean"
//            ignore_index (absent: no target is ignored)                       -> loss
//   cross_entropy (scores (N, C, d...), labels (N, d...), [weights (C)]) reduction="mean"
//            ignore_index (absent: none)                            -> (loss, log_prob (N, C, d...))
// The loss ops here have ONNX semantics (NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss:
// class dim 1, mean weighted by the kept targets' weights), not the eager ops' PyTorch defaults.
#include "kiln/graph/kernels.h"
#include "kiln/ops/inference_extra.h"

namespace kiln::graph {

namespace {

bool flag(const Node& node, std::string_view key, int64_t fallback) {
  int64_t v = node.attr_int(key, fallback);
  if (v != 0 && v != 1) kernel_error(node, detail::concat("attribute ", key, " must be 0 or 1, got ", v));
  return v == 1;
}

template <Tensor (*Op)(const Tensor&)>
std::vector<Tensor> unary(const Node& node, const std::vector<Tensor>& inputs) {
  return {Op(required_input(node, inputs, 0, "X"))};
}

std::vector<Tensor> celu(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::celu(required_input(node, inputs, 0, "X"), node.attr_float("alpha", 1.0))};
}

std::vector<Tensor> thresholded_relu(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::thresholded_relu(required_input(node, inputs, 0, "X"), node.attr_float("alpha", 1.0))};
}

std::vector<Tensor> shrink(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::shrink(required_input(node, inputs, 0, "input"), node.attr_float("lambd", 0.5),
                      node.attr_float("bias", 0.0))};
}

std::vector<Tensor> is_inf(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::is_inf(required_input(node, inputs, 0, "X"), flag(node, "detect_positive", 1),
                      flag(node, "detect_negative", 1))};
}

std::vector<Tensor> trilu(const Node& node, const std::vector<Tensor>& inputs) {
  const Tensor& x = required_input(node, inputs, 0, "input");
  int64_t k = 0;
  if (Tensor kt = optional_input(inputs, 1); kt.defined()) {
    std::vector<int64_t> v = int_values(kt, node, "k");
    if (v.size() != 1) kernel_error(node, detail::concat("k must have one element, got ", v.size()));
    k = v[0];
  }
  return {ops::trilu(x, k, flag(node, "upper", 1))};
}

std::vector<Tensor> prod(const Node& node, const std::vector<Tensor>& inputs) {
  const Tensor& x = required_input(node, inputs, 0, "data");
  bool keepdim = node.attr_int("keepdims", 1) != 0;
  std::vector<int64_t> axes;
  if (Tensor at = optional_input(inputs, 1); at.defined())
    axes = int_values(at, node, "axes");
  else
    axes = node.attr_ints("axes", {});
  if (axes.empty() && node.attr_int("noop_with_empty_axes", 0) != 0) return {clone_raw(x)};
  if (x.dim() == 0) return {clone_raw(x)};
  ops::Dims dims;
  for (int64_t a : axes) dims.push_back(normalize_axis(a, x.dim(), node));
  return {ops::prod(x, dims, keepdim)};  // empty dims: every dim
}

std::vector<Tensor> hardmax(const Node& node, const std::vector<Tensor>& inputs) {
  const Tensor& x = required_input(node, inputs, 0, "input");
  return {ops::hardmax(x, normalize_axis(node.attr_int("axis", -1), x.dim(), node), flag(node, "coerce_2d", 0))};
}

std::vector<Tensor> one_hot(const Node& node, const std::vector<Tensor>& inputs) {
  const Tensor& indices = required_input(node, inputs, 0, "indices");
  double depth = scalar_value(required_input(node, inputs, 1, "depth"), node, "depth");
  // ONNX casts a float depth to int64 (truncation).
  return {ops::one_hot(indices, static_cast<int64_t>(depth), required_input(node, inputs, 2, "values"),
                       node.attr_int("axis", -1))};
}

std::vector<Tensor> eye_like(const Node& node, const std::vector<Tensor>& inputs) {
  std::optional<DType> dtype;
  if (node.has_attr("dtype")) dtype = dtype_from_name(node.attr_string("dtype"));
  return {ops::eye_like(required_input(node, inputs, 0, "input"), node.attr_int("k", 0), dtype)};
}

std::vector<Tensor> numel(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::numel(required_input(node, inputs, 0, "data"))};
}

ops::Reduction reduction(const Node& node) {
  std::string r = node.attr_string("reduction", "mean");
  if (r == "mean") return ops::Reduction::mean;
  if (r == "sum") return ops::Reduction::sum;
  if (r == "none") return ops::Reduction::none;
  kernel_error(node, detail::concat("reduction must be 'none', 'sum' or 'mean', got '", r, "'"));
}

std::optional<int64_t> ignore_index(const Node& node) {
  if (!node.has_attr("ignore_index")) return std::nullopt;
  return node.attr_int("ignore_index");
}

std::vector<Tensor> nll_loss(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::onnx_loss::nll_loss(required_input(node, inputs, 0, "input"), required_input(node, inputs, 1, "target"),
                                   optional_input(inputs, 2), ignore_index(node), reduction(node))};
}

std::vector<Tensor> cross_entropy(const Node& node, const std::vector<Tensor>& inputs) {
  auto [loss, log_prob] = ops::onnx_loss::cross_entropy(required_input(node, inputs, 0, "scores"),
                                                        required_input(node, inputs, 1, "labels"),
                                                        optional_input(inputs, 2), ignore_index(node), reduction(node));
  return {loss, log_prob};
}

}  // namespace

void register_extra_kernels(KernelTable& t) {
  t.add("tan", unary<ops::tan>);
  t.add("sinh", unary<ops::sinh>);
  t.add("cosh", unary<ops::cosh>);
  t.add("asin", unary<ops::asin>);
  t.add("acos", unary<ops::acos>);
  t.add("atan", unary<ops::atan>);
  t.add("asinh", unary<ops::asinh>);
  t.add("acosh", unary<ops::acosh>);
  t.add("atanh", unary<ops::atanh>);
  t.add("is_nan", unary<ops::is_nan>);
  t.add("celu", celu);
  t.add("thresholded_relu", thresholded_relu);
  t.add("shrink", shrink);
  t.add("is_inf", is_inf);
  t.add("trilu", trilu);
  t.add("prod", prod);
  t.add("hardmax", hardmax);
  t.add("one_hot", one_hot);
  t.add("eye_like", eye_like);
  t.add("numel", numel);
  t.add("nll_loss", nll_loss);
  t.add("cross_entropy", cross_entropy);
}

}  // namespace kiln::graph
