// Graph kernels for the elementwise and broadcasting ops. Graph form:
//   add sub mul div pow maximum minimum eq ne lt le gt ge   (a, b), NumPy broadcasting
//   where                                                  (cond, a, b)
//   neg abs exp log sqrt rsqrt tanh sigmoid relu silu logical_not   (x)
//   gelu   (x) {approximate: "none" | "tanh"}
//   clamp  (x, [min], [max]) — bounds as one-element tensors, or attributes {min, max}
//   to     (x) {dtype: "f32" | "i64" | ...}  (Kiln dtype names)
//   contiguous, clone   (x): a copy
#include "kiln/graph/kernels.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/inference_ops.h"

namespace kiln::graph {

namespace {

using BinaryFn = Tensor (*)(const Tensor&, const Tensor&);
using UnaryFn = Tensor (*)(const Tensor&);

template <BinaryFn F>
std::vector<Tensor> binary(const Node& node, const std::vector<Tensor>& in) {
  if (in.size() != 2 || !in[0].defined() || !in[1].defined()) kernel_error(node, "expects two inputs");
  return {F(in[0], in[1])};
}

// ONNX arithmetic keeps the inputs' type: integer division truncates, Pow has its base's type,
// f16 in gives f16 out (Kiln's eager ops promote integers to float for div and pow, and compute
// 16-bit floats in f32).
template <BinaryFn F, bool kDiv = false, bool kPow = false>
std::vector<Tensor> arithmetic(const Node& node, const std::vector<Tensor>& in) {
  if (in.size() != 2 || !in[0].defined() || !in[1].defined()) kernel_error(node, "expects two inputs");
  const Tensor& a = in[0];
  const Tensor& b = in[1];
  DType want = a.dtype();
  if (!kPow && a.dtype() != b.dtype()) return {F(a, b)};
  if (is_integral(want) && (kDiv || kPow)) {
    Tensor r = F(ops::to(a, DType::f64), ops::to(b, DType::f64));
    // Toward zero, as C integer division and NumPy's astype.
    r = ops::where(ops::lt(r, 0.0), ops::neg(ops::floor(ops::neg(r))), ops::floor(r));
    return {ops::to(r, want)};
  }
  Tensor r = F(a, b);
  return {r.dtype() == want ? r : ops::to(r, want)};
}

template <UnaryFn F>
std::vector<Tensor> unary(const Node& node, const std::vector<Tensor>& in) {
  if (in.empty() || !in[0].defined()) kernel_error(node, "expects one input");
  return {F(in[0])};
}

std::vector<Tensor> where_kernel(const Node& node, const std::vector<Tensor>& in) {
  if (in.size() != 3) kernel_error(node, "expects (cond, a, b)");
  Tensor cond = in[0].dtype() == DType::b8 ? in[0] : ops::to(in[0], DType::b8);
  return {ops::where(cond, in[1], in[2])};
}

std::vector<Tensor> gelu_kernel(const Node& node, const std::vector<Tensor>& in) {
  std::string approx = node.attr_string("approximate", "none");
  if (approx != "none" && approx != "tanh") kernel_error(node, "approximate must be \"none\" or \"tanh\"");
  return {ops::gelu(in.at(0), approx == "tanh" ? ops::GeluApprox::tanh : ops::GeluApprox::none)};
}

std::vector<Tensor> clamp_kernel(const Node& node, const std::vector<Tensor>& in) {
  std::optional<double> lo, hi;
  if (in.size() > 1 && in[1].defined()) lo = scalar_value(in[1], node, "min");
  else if (node.has_attr("min")) lo = node.attr_float("min");
  if (in.size() > 2 && in[2].defined()) hi = scalar_value(in[2], node, "max");
  else if (node.has_attr("max")) hi = node.attr_float("max");
  const Tensor& x = in.at(0);
  if (!lo && !hi) return {ops::clone(x)};
  return {ops::clamp(x, lo, hi)};
}

std::vector<Tensor> to_kernel(const Node& node, const std::vector<Tensor>& in) {
  DType t = dtype_from_name(node.attr_string("dtype"));
  const Tensor& x = in.at(0);
  // to() on the same dtype returns its input; a graph value must be its own tensor only when the
  // executor hands out buffers, so copy in that case.
  return {x.dtype() == t ? ops::clone(x) : ops::to(x, t)};
}

}  // namespace

void register_elementwise_kernels(KernelTable& t) {
  t.add("add", arithmetic<ops::add>);
  t.add("sub", arithmetic<ops::sub>);
  t.add("mul", arithmetic<ops::mul>);
  t.add("div", arithmetic<ops::div, true>);
  t.add("pow", arithmetic<ops::pow, false, true>);
  t.add("maximum", arithmetic<ops::maximum>);
  t.add("minimum", arithmetic<ops::minimum>);
  t.add("eq", binary<ops::eq>);
  t.add("ne", binary<ops::ne>);
  t.add("lt", binary<ops::lt>);
  t.add("le", binary<ops::le>);
  t.add("gt", binary<ops::gt>);
  t.add("ge", binary<ops::ge>);
  t.add("where", where_kernel);
  t.add("neg", unary<ops::neg>);
  t.add("abs", unary<ops::abs>);
  t.add("exp", unary<ops::exp>);
  t.add("log", unary<ops::log>);
  t.add("sqrt", unary<ops::sqrt>);
  t.add("rsqrt", unary<ops::rsqrt>);
  t.add("tanh", unary<ops::tanh>);
  t.add("sigmoid", unary<ops::sigmoid>);
  t.add("relu", unary<ops::relu>);
  t.add("silu", unary<ops::silu>);
  t.add("logical_not", unary<ops::logical_not>);
  t.add("gelu", gelu_kernel);
  t.add("clamp", clamp_kernel);
  t.add("to", to_kernel);
  t.add("contiguous", unary<ops::clone>);
  t.add("clone", unary<ops::clone>);
}

}  // namespace kiln::graph
