// ONNX If, Loop and Scan -> the control-flow graph ops (graph form in graph/kernels_control.cpp).
// Bodies are imported with onnx_subgraph.h: outer values they read become the node's last
// num_captured inputs (outer constants are copied into the bodies instead). Branch outputs and
// loop-carried values may be sequences or optionals (If-13/16, Loop-13/16); their kinds come from
// the bodies (graph.h ValueKind). Maps are refused when the body is imported.
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

std::shared_ptr<graph::Graph> body_of(const ConvertContext& ctx, std::string_view key,
                                      const std::vector<OuterRead>& outer,
                                      const std::vector<std::optional<BodyInputType>>& types) {
  const ::onnx::GraphProto& gp = graph_attr(ctx, key);
  return import_body(ctx, gp, outer, types, detail::concat(key, " of node '", node_label(ctx), "'"));
}

// The kind of an If output that is `a` in one branch and `b` in the other: the same kind, or the
// optional of it when one side is optional.
graph::ValueKind merge_kinds(const ConvertContext& ctx, graph::ValueKind a, graph::ValueKind b, std::string_view what) {
  using graph::ValueKind;
  auto optional_of = [](ValueKind k) {
    return k == ValueKind::tensor ? ValueKind::optional_tensor : k == ValueKind::sequence ? ValueKind::optional_sequence : k;
  };
  if (a == b) return a;
  if (optional_of(a) == optional_of(b)) return optional_of(a);
  ctx.invalid(detail::concat(what, " is a tensor on one path and a sequence on another"));
}

// Outputs shape inference left untyped take the type of the body output they come from, and
// their kind from it (as ONNX types a loop's outputs: an optional initial value that the body
// replaces by a sequence gives a sequence output).
void type_outputs(const ConvertContext& ctx, graph::Node* n, const graph::Graph& body, size_t first_body_output) {
  for (size_t k = 0; k < n->outputs.size(); ++k) {
    size_t b = first_body_output + k;
    if (b >= body.outputs().size()) continue;
    Value* out = n->outputs[k];
    const Value* from = body.outputs()[b];
    if (!ctx.output_dtype(k)) out->dtype = from->dtype;
    out->kind = from->kind;
    if (!out->is_tensor()) out->shape.reset();
  }
}

std::vector<Value*> with_captured(std::vector<Value*> inputs, const std::vector<Value*>& captured) {
  inputs.insert(inputs.end(), captured.begin(), captured.end());
  return inputs;
}

void convert_if(ConvertContext& ctx) {
  const auto& then_gp = graph_attr(ctx, "then_branch");
  const auto& else_gp = graph_attr(ctx, "else_branch");
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
  for (size_t k = 0; k < n->outputs.size() && k < else_g->outputs().size(); ++k) {
    Value* out = n->outputs[k];
    out->kind = merge_kinds(ctx, out->kind, else_g->outputs()[k]->kind, detail::concat("output ", k));
    if (!out->is_tensor()) out->shape.reset();
  }
  n->subgraphs["then_branch"] = std::move(then_g);
  n->subgraphs["else_branch"] = std::move(else_g);
}

void convert_loop(ConvertContext& ctx) {
  const auto& gp = graph_attr(ctx, "body");
  const size_t carried = ctx.num_inputs() < 2 ? 0 : ctx.num_inputs() - 2;
  if (static_cast<size_t>(gp.input_size()) != 2 + carried)
    ctx.invalid(detail::concat("the body takes ", gp.input_size(), " inputs, the node has ", carried,
                               " loop-carried values (expected ", 2 + carried, ")"));
  if (ctx.num_outputs() < carried || static_cast<size_t>(gp.output_size()) != 1 + ctx.num_outputs())
    ctx.invalid(detail::concat("the body returns ", gp.output_size(), " values for ", ctx.num_outputs(),
                               " outputs and ", carried, " loop-carried values"));
  std::vector<Value*> inputs = {ctx.in(0), ctx.in(1)};
  std::vector<std::optional<BodyInputType>> types = {BodyInputType{DType::i64}, BodyInputType{DType::b8}};
  for (size_t j = 0; j < carried; ++j) {
    Value* v = ctx.required_in(2 + j, "loop-carried value");
    inputs.push_back(v);
    types.push_back(BodyInputType{v->dtype, v->kind});
  }
  std::vector<OuterRead> outer = outer_reads(ctx, {&gp});
  std::vector<Value*> captured = captured_inputs(outer);
  auto body = body_of(ctx, "body", outer, types);
  for (size_t k = 1 + carried; k < body->outputs().size(); ++k)
    if (!body->outputs()[k]->is_tensor())
      ctx.unsupported(detail::concat("scan output '", body->outputs()[k]->name, "' is not a tensor"));
  graph::Node* n = ctx.emit("loop", with_captured(std::move(inputs), captured),
                            {{"num_captured", static_cast<int64_t>(captured.size())}});
  type_outputs(ctx, n, *body, 1);
  n->subgraphs["body"] = std::move(body);
}

void convert_scan(ConvertContext& ctx) {
  const auto& gp = graph_attr(ctx, "body");
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
  std::vector<std::optional<BodyInputType>> types;
  for (size_t j = 0; j < formal; ++j) {
    Value* v = ctx.required_in(lead + j, j < states ? "state" : "scan input");
    if (!v->is_tensor()) ctx.unsupported(detail::concat("input '", v->name, "' is not a tensor (Scan carries tensors)"));
    inputs.push_back(v);
    types.push_back(BodyInputType{v->dtype});
  }
  std::vector<OuterRead> outer = outer_reads(ctx, {&gp});
  std::vector<Value*> captured = captured_inputs(outer);
  auto body = body_of(ctx, "body", outer, types);
  for (const Value* out : body->outputs())
    if (!out->is_tensor()) ctx.unsupported(detail::concat("body output '", out->name, "' is not a tensor"));
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
