// ONNX If, Loop and Scan -> the control-flow graph ops (graph form in graph/kernels_control.cpp).
// Bodies are imported with onnx_subgraph.h: outer values they read become the node's last
// num_captured inputs (outer constants are copied into the bodies instead). Sequence- and
// optional-typed values (If-13/Loop-13 _seq forms, If-16 optionals) are not supported: Kiln graphs
// carry tensors only.
#include "kiln/io/onnx/onnx_convert.h"
#include "kiln/io/onnx/onnx_subgraph.h"

namespace kiln::io {

namespace {

std::string node_label(const ConvertContext& ctx) {
  const auto& n = ctx.node;
  return n.name().empty() ? (n.output_size() ? n.output(0) : n.op_type()) : n.name();
}

const ::onnx::GraphProto& graph_attr(const ConvertContext& ctx, std::string_view name) {
  const auto* a = ctx.find_attr(name);
  if (!a || a->type() != ::onnx::AttributeProto::GRAPH) ctx.invalid(detail::concat("missing graph attribute '", name, "'"));
  return a->g();
}

// Kiln graphs hold tensors only: a body input or output of another type is refused up front.
void check_tensor_types(const ConvertContext& ctx, const ::onnx::GraphProto& body, std::string_view key) {
  auto check = [&](const ::onnx::ValueInfoProto& vi) {
    const auto& t = vi.type();
    if (t.has_sequence_type() || t.has_optional_type() || t.has_map_type())
      ctx.unsupported(detail::concat(key, " value '", vi.name(),
                                     "' is a sequence, map or optional (control flow carries tensors only)"));
  };
  for (const auto& in : body.input()) check(in);
  for (const auto& out : body.output()) check(out);
}

std::shared_ptr<graph::Graph> body_of(const ConvertContext& ctx, std::string_view key,
                                      const std::vector<OuterRead>& outer,
                                      const std::vector<std::optional<DType>>& dtypes) {
  const ::onnx::GraphProto& gp = graph_attr(ctx, key);
  return import_body(ctx, gp, outer, dtypes, detail::concat(key, " of node '", node_label(ctx), "'"));
}

// Outputs shape inference left untyped take the type of the body output they come from.
void type_outputs(const ConvertContext& ctx, graph::Node* n, const graph::Graph& body, size_t first_body_output) {
  for (size_t k = 0; k < n->outputs.size(); ++k) {
    size_t b = first_body_output + k;
    if (!ctx.output_dtype(k) && b < body.outputs().size()) n->outputs[k]->dtype = body.outputs()[b]->dtype;
  }
}

std::vector<Value*> with_captured(std::vector<Value*> inputs, const std::vector<Value*>& captured) {
  inputs.insert(inputs.end(), captured.begin(), captured.end());
  return inputs;
}

void convert_if(ConvertContext& ctx) {
  const auto& then_gp = graph_attr(ctx, "then_branch");
  const auto& else_gp = graph_attr(ctx, "else_branch");
  check_tensor_types(ctx, then_gp, "then_branch");
  check_tensor_types(ctx, else_gp, "else_branch");
  for (const auto* gp : {&then_gp, &else_gp})
    if (static_cast<size_t>(gp->output_size()) != ctx.num_outputs())
      ctx.invalid(detail::concat("a branch returns ", gp->output_size(), " values, the node has ", ctx.num_outputs(),
                                 " outputs"));
  std::vector<OuterRead> outer = outer_reads(ctx, {&then_gp, &else_gp});
  std::vector<Value*> captured = captured_inputs(outer);
  auto then_g = body_of(ctx, "then_branch", outer, {});
  auto else_g = body_of(ctx, "else_branch", outer, {});
  graph::Node* n = ctx.emit("if_else", with_captured({ctx.required_in(0, "cond")}, captured),
                            {{"num_captured", static_cast<int64_t>(captured.size())}});
  type_outputs(ctx, n, *then_g, 0);
  n->subgraphs["then_branch"] = std::move(then_g);
  n->subgraphs["else_branch"] = std::move(else_g);
}

void convert_loop(ConvertContext& ctx) {
  const auto& gp = graph_attr(ctx, "body");
  check_tensor_types(ctx, gp, "body");
  const size_t carried = ctx.num_inputs() < 2 ? 0 : ctx.num_inputs() - 2;
  if (static_cast<size_t>(gp.input_size()) != 2 + carried)
    ctx.invalid(detail::concat("the body takes ", gp.input_size(), " inputs, the node has ", carried,
                               " loop-carried values (expected ", 2 + carried, ")"));
  if (ctx.num_outputs() < carried || static_cast<size_t>(gp.output_size()) != 1 + ctx.num_outputs())
    ctx.invalid(detail::concat("the body returns ", gp.output_size(), " values for ", ctx.num_outputs(),
                               " outputs and ", carried, " loop-carried values"));
  std::vector<Value*> inputs = {ctx.in(0), ctx.in(1)};
  std::vector<std::optional<DType>> dtypes = {DType::i64, DType::b8};
  for (size_t j = 0; j < carried; ++j) {
    Value* v = ctx.required_in(2 + j, "loop-carried value");
    inputs.push_back(v);
    dtypes.push_back(v->dtype);
  }
  std::vector<OuterRead> outer = outer_reads(ctx, {&gp});
  std::vector<Value*> captured = captured_inputs(outer);
  auto body = body_of(ctx, "body", outer, dtypes);
  graph::Node* n = ctx.emit("loop", with_captured(std::move(inputs), captured),
                            {{"num_captured", static_cast<int64_t>(captured.size())}});
  type_outputs(ctx, n, *body, 1);
  n->subgraphs["body"] = std::move(body);
}

void convert_scan(ConvertContext& ctx) {
  const auto& gp = graph_attr(ctx, "body");
  check_tensor_types(ctx, gp, "body");
  const bool batched = ctx.opset < 9;  // Scan-8: sequence_lens first, a batch axis on everything
  const size_t lead = batched ? 1 : 0;
  const int64_t s = ctx.attr_int("num_scan_inputs", 0);
  if (s < 1 || static_cast<size_t>(s) + lead > ctx.num_inputs())
    ctx.invalid(detail::concat("num_scan_inputs=", s, " does not fit the node's ", ctx.num_inputs(), " inputs"));
  const size_t formal = ctx.num_inputs() - lead;
  const size_t states = formal - static_cast<size_t>(s);
  if (static_cast<size_t>(gp.input_size()) != formal || static_cast<size_t>(gp.output_size()) != ctx.num_outputs() ||
      ctx.num_outputs() < states)
    ctx.invalid(detail::concat("the body's ", gp.input_size(), " inputs and ", gp.output_size(),
                               " outputs do not match the node's ", formal, " inputs and ", ctx.num_outputs(), " outputs"));
  std::vector<Value*> inputs;
  if (batched) inputs.push_back(ctx.in(0));
  std::vector<std::optional<DType>> dtypes;
  for (size_t j = 0; j < formal; ++j) {
    Value* v = ctx.required_in(lead + j, j < states ? "state" : "scan input");
    inputs.push_back(v);
    dtypes.push_back(v->dtype);
  }
  std::vector<OuterRead> outer = outer_reads(ctx, {&gp});
  std::vector<Value*> captured = captured_inputs(outer);
  auto body = body_of(ctx, "body", outer, dtypes);
  Attrs attrs = {{"num_scan_inputs", s}};
  for (const char* key : {"directions", "scan_input_axes", "scan_input_directions", "scan_output_axes",
                          "scan_output_directions"})
    if (ctx.has_attr(key)) attrs[key] = ctx.attr_ints(key);
  attrs["num_captured"] = static_cast<int64_t>(captured.size());
  if (batched) attrs["batched"] = int64_t{1};
  graph::Node* n = ctx.emit("scan", with_captured(std::move(inputs), captured), std::move(attrs));
  type_outputs(ctx, n, *body, 0);
  n->subgraphs["body"] = std::move(body);
}

}  // namespace

void register_control_converters(ConverterTable& t) {
  t.add("If", convert_if);
  t.add("Loop", convert_loop);
  t.add("Scan", convert_scan);
}

}  // namespace kiln::io
