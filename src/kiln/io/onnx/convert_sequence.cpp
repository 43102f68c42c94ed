// ONNX sequence and optional ops -> the graph ops of graph/kernels_sequence.cpp (SequenceMap ->
// sequence_map, whose body is imported like a Loop's, kernels_control.cpp). Each converter also
// gives its outputs their kind (graph.h ValueKind) and element dtype, which ONNX's inference
// may leave out inside bodies.
#include "kiln/io/onnx/onnx_convert.h"
#include "kiln/io/onnx/onnx_subgraph.h"
#include "kiln/io/onnx/tensor_proto.h"

namespace kiln::io {

namespace {

using graph::ValueKind;

void set_kind(graph::Node* n, size_t k, ValueKind kind, DType dtype) {
  Value* v = n->outputs[k];
  v->kind = kind;
  v->dtype = dtype;
  if (kind != ValueKind::tensor) v->shape.reset();
}

Value* sequence_in(const ConvertContext& ctx, size_t i) {
  Value* s = ctx.required_in(i, "sequence");
  if (s->kind != ValueKind::sequence)
    ctx.invalid(detail::concat("input ", i, " (%", s->name, ") must be a sequence, it is ", graph::type_str(*s)));
  return s;
}

// The node's inputs in order, trailing absent ones dropped.
std::vector<Value*> inputs_of(const ConvertContext& ctx) {
  std::vector<Value*> in;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) in.push_back(ctx.in(i));
  while (!in.empty() && !in.back()) in.pop_back();
  return in;
}

void sequence_empty(ConvertContext& ctx) {
  DType dt = dtype_from_onnx(static_cast<int32_t>(ctx.attr_int("dtype", ::onnx::TensorProto::FLOAT)),
                             "SequenceEmpty dtype");
  set_kind(ctx.emit("sequence_empty", {}, {}, dt), 0, ValueKind::sequence, dt);
}

void sequence_construct(ConvertContext& ctx) {
  std::vector<Value*> in;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) in.push_back(ctx.required_in(i, "tensor"));
  if (in.empty()) ctx.invalid("SequenceConstruct needs at least one input");
  set_kind(ctx.emit("sequence_construct", in), 0, ValueKind::sequence, in[0]->dtype);
}

void sequence_insert(ConvertContext& ctx) {
  Value* s = sequence_in(ctx, 0);
  ctx.required_in(1, "tensor");
  set_kind(ctx.emit("sequence_insert", inputs_of(ctx)), 0, ValueKind::sequence, s->dtype);
}

void sequence_at(ConvertContext& ctx) {
  Value* s = sequence_in(ctx, 0);
  ctx.required_in(1, "position");
  set_kind(ctx.emit("sequence_at", inputs_of(ctx), {}, s->dtype), 0, ValueKind::tensor,
           ctx.output_dtype(0).value_or(s->dtype));
}

void sequence_erase(ConvertContext& ctx) {
  Value* s = sequence_in(ctx, 0);
  set_kind(ctx.emit("sequence_erase", inputs_of(ctx)), 0, ValueKind::sequence, s->dtype);
}

void sequence_length(ConvertContext& ctx) {
  sequence_in(ctx, 0);
  set_kind(ctx.emit("sequence_length", inputs_of(ctx), {}, DType::i64), 0, ValueKind::tensor, DType::i64);
}

void split_to_sequence(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "input");
  Attrs attrs = {{"axis", ctx.attr_int("axis", 0)}, {"keepdims", ctx.attr_int("keepdims", 1)}};
  set_kind(ctx.emit("split_to_sequence", inputs_of(ctx), std::move(attrs)), 0, ValueKind::sequence, x->dtype);
}

void concat_from_sequence(ConvertContext& ctx) {
  Value* s = sequence_in(ctx, 0);
  if (!ctx.has_attr("axis")) ctx.invalid("missing attribute 'axis'");
  Attrs attrs = {{"axis", ctx.attr_int("axis", 0)}, {"new_axis", ctx.attr_int("new_axis", 0)}};
  set_kind(ctx.emit("concat_from_sequence", {s}, std::move(attrs), s->dtype), 0, ValueKind::tensor,
           ctx.output_dtype(0).value_or(s->dtype));
}

// Optional-15: wraps its input, or (no input) makes the empty optional of attribute `type`.
void optional(ConvertContext& ctx) {
  Value* x = ctx.in(0);
  ValueKind kind;
  DType dt = DType::f32;
  if (x) {
    if (x->kind != ValueKind::tensor && x->kind != ValueKind::sequence)
      ctx.unsupported(detail::concat("an optional of ", graph::type_str(*x), " (nested optionals)"));
    kind = x->kind == ValueKind::tensor ? ValueKind::optional_tensor : ValueKind::optional_sequence;
    dt = x->dtype;
  } else {
    const auto* a = ctx.find_attr("type");
    if (!a || a->type() != ::onnx::AttributeProto::TYPE_PROTO) ctx.invalid("an Optional without input needs attribute 'type'");
    OnnxValueType t = onnx_value_type(a->tp(), "Optional attribute 'type'");
    if (t.kind != ValueKind::tensor && t.kind != ValueKind::sequence)
      ctx.unsupported("an optional of an optional");
    kind = t.kind == ValueKind::tensor ? ValueKind::optional_tensor : ValueKind::optional_sequence;
    dt = t.dtype.value_or(DType::f32);
  }
  set_kind(ctx.emit("optional_construct", x ? std::vector<Value*>{x} : std::vector<Value*>{}, {}, dt), 0, kind, dt);
}

void optional_has_element(ConvertContext& ctx) {
  set_kind(ctx.emit("optional_has_element", inputs_of(ctx), {}, DType::b8), 0, ValueKind::tensor, DType::b8);
}

void optional_get_element(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "optional");
  ValueKind kind = x->kind == ValueKind::optional_tensor     ? ValueKind::tensor
                   : x->kind == ValueKind::optional_sequence ? ValueKind::sequence
                                                             : x->kind;
  set_kind(ctx.emit("optional_get_element", {x}, {}, x->dtype), 0, kind, x->dtype);
}

// SequenceMap: the body runs once per element of the sequence inputs (a tensor input is passed
// whole every time); its outputs are collected into sequences.
void sequence_map(ConvertContext& ctx) {
  const auto* a = ctx.find_attr("body");
  if (!a || a->type() != ::onnx::AttributeProto::GRAPH) ctx.invalid("missing graph attribute 'body'");
  const ::onnx::GraphProto& gp = a->g();
  sequence_in(ctx, 0);
  if (static_cast<size_t>(gp.input_size()) != ctx.num_inputs() || static_cast<size_t>(gp.output_size()) != ctx.num_outputs())
    ctx.invalid(detail::concat("the body's ", gp.input_size(), " inputs and ", gp.output_size(),
                               " outputs do not match the node's ", ctx.num_inputs(), " inputs and ", ctx.num_outputs(),
                               " outputs"));
  std::vector<Value*> inputs;
  std::vector<std::optional<BodyInputType>> types;
  for (size_t j = 0; j < ctx.num_inputs(); ++j) {
    Value* v = ctx.required_in(j, "input");
    if (v->kind != ValueKind::tensor && v->kind != ValueKind::sequence)
      ctx.unsupported(detail::concat("input ", j, " is ", graph::type_str(*v), " (sequences and tensors only)"));
    inputs.push_back(v);
    types.push_back(BodyInputType{v->dtype, ValueKind::tensor});
  }
  std::vector<OuterRead> outer = outer_reads(ctx, {&gp});
  std::vector<Value*> captured = captured_inputs(outer);
  std::string label = ctx.node.name().empty() ? ctx.node.output(0) : ctx.node.name();
  auto body = import_body(ctx, gp, outer, types, detail::concat("body of node '", label, "'"));
  for (const Value* out : body->outputs())
    if (!out->is_tensor()) ctx.unsupported(detail::concat("body output '", out->name, "' is not a tensor"));
  inputs.insert(inputs.end(), captured.begin(), captured.end());
  graph::Node* n = ctx.emit("sequence_map", std::move(inputs), {{"num_captured", static_cast<int64_t>(captured.size())}});
  for (size_t k = 0; k < n->outputs.size(); ++k) set_kind(n, k, ValueKind::sequence, body->outputs()[k]->dtype);
  n->subgraphs["body"] = std::move(body);
}

}  // namespace

void register_sequence_converters(ConverterTable& t) {
  t.add("SequenceEmpty", sequence_empty);
  t.add("SequenceConstruct", sequence_construct);
  t.add("SequenceInsert", sequence_insert);
  t.add("SequenceAt", sequence_at);
  t.add("SequenceErase", sequence_erase);
  t.add("SequenceLength", sequence_length);
  t.add("SplitToSequence", split_to_sequence);
  t.add("ConcatFromSequence", concat_from_sequence);
  t.add("SequenceMap", sequence_map);
  t.add("Optional", optional);
  t.add("OptionalHasElement", optional_has_element);
  t.add("OptionalGetElement", optional_get_element);
}

}  // namespace kiln::io
