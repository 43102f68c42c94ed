// Graph kernels for the inference ops (ops/inference_ops.h): the ONNX operators with the same
// names and semantics, forward only. Graph form (inputs in ONNX order; attributes by ONNX name):
//   erf, hard_swish, softplus, softsign, reciprocal, floor, ceil, round, sign, sin, cos: (x)
//   leaky_relu (x) alpha=0.01 | hard_sigmoid (x) alpha=0.2 beta=0.5 | elu (x) alpha=1
//   selu (x) alpha, gamma (ONNX defaults)
//   logical_and / logical_or / logical_xor (a, b) | mod (a, b) fmod=0|1 | prelu (x, slope)
//   tile (x, repeats: 1-d integer tensor)
//   range (start, limit, delta: one-element tensors of one dtype)
//   cumsum (x, axis: one-element integer tensor) exclusive=0 reverse=0
//   einsum (operands...) equation="..."
//   shape_of (x) start=0 end (optional) -> i64 1-d
//   constant_of_shape (shape: 1-d integer tensor) value (optional one-element Tensor; f32 0)
#include "kiln/graph/kernels.h"
#include "kiln/ops/inference_ops.h"

namespace kiln::graph {

namespace {

template <Tensor (*Op)(const Tensor&)>
std::vector<Tensor> unary(const Node& node, const std::vector<Tensor>& inputs) {
  return {Op(required_input(node, inputs, 0, "X"))};
}

template <Tensor (*Op)(const Tensor&, const Tensor&)>
std::vector<Tensor> binary(const Node& node, const std::vector<Tensor>& inputs) {
  return {Op(required_input(node, inputs, 0, "A"), required_input(node, inputs, 1, "B"))};
}

std::vector<Tensor> leaky_relu(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::leaky_relu(required_input(node, inputs, 0, "X"), node.attr_float("alpha", 0.01))};
}

std::vector<Tensor> hard_sigmoid(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::hard_sigmoid(required_input(node, inputs, 0, "X"), node.attr_float("alpha", 0.2),
                            node.attr_float("beta", 0.5))};
}

std::vector<Tensor> elu(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::elu(required_input(node, inputs, 0, "X"), node.attr_float("alpha", 1.0))};
}

std::vector<Tensor> selu(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::selu(required_input(node, inputs, 0, "X"), node.attr_float("alpha", 1.67326319217681884765625),
                    node.attr_float("gamma", 1.05070102214813232421875))};
}

std::vector<Tensor> mod(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::mod(required_input(node, inputs, 0, "A"), required_input(node, inputs, 1, "B"),
                   flag_attr(node, "fmod"))};
}

std::vector<Tensor> prelu(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::prelu(required_input(node, inputs, 0, "X"), required_input(node, inputs, 1, "slope"))};
}

std::vector<Tensor> tile(const Node& node, const std::vector<Tensor>& inputs) {
  const Tensor& x = required_input(node, inputs, 0, "input");
  return {ops::tile(x, int_values(required_input(node, inputs, 1, "repeats"), node, "repeats"))};
}

std::vector<Tensor> range(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::range(required_input(node, inputs, 0, "start"), required_input(node, inputs, 1, "limit"),
                     required_input(node, inputs, 2, "delta"))};
}

std::vector<Tensor> cumsum(const Node& node, const std::vector<Tensor>& inputs) {
  const Tensor& x = required_input(node, inputs, 0, "x");
  std::vector<int64_t> axis = int_values(required_input(node, inputs, 1, "axis"), node, "axis");
  if (axis.size() != 1) kernel_error(node, detail::concat("axis must have one element, got ", axis.size()));
  return {ops::cumsum(x, normalize_axis(axis[0], x.dim(), node), flag_attr(node, "exclusive"),
                      flag_attr(node, "reverse"))};
}

std::vector<Tensor> einsum(const Node& node, const std::vector<Tensor>& inputs) {
  if (inputs.empty()) kernel_error(node, "einsum needs at least one operand");
  for (size_t i = 0; i < inputs.size(); ++i) required_input(node, inputs, i, "Inputs");
  return {ops::einsum(node.attr_string("equation"), inputs)};
}

std::vector<Tensor> shape_of(const Node& node, const std::vector<Tensor>& inputs) {
  std::optional<int64_t> end;
  if (node.has_attr("end")) end = node.attr_int("end");
  return {ops::shape_of(required_input(node, inputs, 0, "data"), node.attr_int("start", 0), end)};
}

std::vector<Tensor> constant_of_shape(const Node& node, const std::vector<Tensor>& inputs) {
  Tensor value = node.has_attr("value") ? node.attr_tensor("value") : Tensor();
  return {ops::constant_of_shape(required_input(node, inputs, 0, "input"), value)};
}

}  // namespace

void register_inference_kernels(KernelTable& t) {
  t.add("erf", unary<ops::erf>);
  t.add("leaky_relu", leaky_relu);
  t.add("hard_sigmoid", hard_sigmoid);
  t.add("hard_swish", unary<ops::hard_swish>);
  t.add("elu", elu);
  t.add("selu", selu);
  t.add("softplus", unary<ops::softplus>);
  t.add("softsign", unary<ops::softsign>);
  t.add("reciprocal", unary<ops::reciprocal>);
  t.add("floor", unary<ops::floor>);
  t.add("ceil", unary<ops::ceil>);
  t.add("round", unary<ops::round>);
  t.add("sign", unary<ops::sign>);
  t.add("sin", unary<ops::sin>);
  t.add("cos", unary<ops::cos>);
  t.add("logical_and", binary<ops::logical_and>);
  t.add("logical_or", binary<ops::logical_or>);
  t.add("logical_xor", binary<ops::logical_xor>);
  t.add("mod", mod);
  t.add("prelu", prelu);
  t.add("tile", tile);
  t.add("range", range);
  t.add("cumsum", cumsum);
  t.add("einsum", einsum);
  t.add("shape_of", shape_of);
  t.add("constant_of_shape", constant_of_shape);
}

}  // namespace kiln::graph
