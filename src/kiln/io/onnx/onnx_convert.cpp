#include "kiln/io/onnx/onnx_convert.h"

#include "kiln/core/error.h"
#include "kiln/io/onnx/tensor_proto.h"

namespace kiln::io {

ConvertContext::ConvertContext(graph::Graph& graph, int64_t opset_version, const ::onnx::NodeProto& n,
                               const std::map<std::string, Value*, std::less<>>& values,
                               const std::map<std::string, const ::onnx::ValueInfoProto*, std::less<>>& infos)
    : g(graph), opset(opset_version), node(n), values_(values), infos_(infos) {}

namespace {

std::string node_label(const ::onnx::NodeProto& node) {
  return node.name().empty() ? (node.output_size() ? node.output(0) : node.op_type()) : node.name();
}

}  // namespace

[[noreturn]] void ConvertContext::unsupported(std::string_view what) const {
  throw NotImplementedError(detail::concat("ONNX ", node.op_type(), " (opset ", opset, ") node '", node_label(node),
                                           "': ", what));
}

[[noreturn]] void ConvertContext::invalid(std::string_view what) const {
  throw ValueError(detail::concat("ONNX ", node.op_type(), " node '", node_label(node), "': ", what));
}

Value* ConvertContext::in(size_t i) const {
  if (i >= num_inputs() || node.input(static_cast<int>(i)).empty()) return nullptr;
  const std::string& name = node.input(static_cast<int>(i));
  auto it = values_.find(name);
  if (it == values_.end()) invalid(detail::concat("input '", name, "' is not defined before the node"));
  return it->second;
}

Value* ConvertContext::required_in(size_t i, std::string_view what) const {
  Value* v = in(i);
  if (!v) invalid(detail::concat("missing input ", i, " (", what, ")"));
  return v;
}

std::optional<Tensor> ConvertContext::const_in(size_t i) const {
  Value* v = in(i);
  if (!v || !v->is_constant()) return std::nullopt;
  return v->constant;
}

std::optional<std::vector<int64_t>> ConvertContext::const_ints(size_t i) const {
  std::optional<Tensor> t = const_in(i);
  if (!t) return std::nullopt;
  if (!is_integral(t->dtype()) || t->dim() > 1) invalid(detail::concat("input ", i, " must be a 1-d integer tensor"));
  return t->to_vector<int64_t>();
}

const ::onnx::AttributeProto* ConvertContext::find_attr(std::string_view name) const {
  for (const auto& a : node.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

int64_t ConvertContext::attr_int(std::string_view name, int64_t fallback) const {
  const auto* a = find_attr(name);
  if (!a) return fallback;
  if (a->type() != ::onnx::AttributeProto::INT) invalid(detail::concat("attribute '", name, "' must be an int"));
  return a->i();
}

double ConvertContext::attr_float(std::string_view name, double fallback) const {
  const auto* a = find_attr(name);
  if (!a) return fallback;
  if (a->type() == ::onnx::AttributeProto::INT) return static_cast<double>(a->i());
  if (a->type() != ::onnx::AttributeProto::FLOAT) invalid(detail::concat("attribute '", name, "' must be a float"));
  return a->f();
}

std::string ConvertContext::attr_string(std::string_view name, std::string_view fallback) const {
  const auto* a = find_attr(name);
  if (!a) return std::string(fallback);
  if (a->type() != ::onnx::AttributeProto::STRING) invalid(detail::concat("attribute '", name, "' must be a string"));
  return a->s();
}

std::vector<int64_t> ConvertContext::attr_ints(std::string_view name, std::vector<int64_t> fallback) const {
  const auto* a = find_attr(name);
  if (!a) return fallback;
  if (a->type() != ::onnx::AttributeProto::INTS) invalid(detail::concat("attribute '", name, "' must be ints"));
  return {a->ints().begin(), a->ints().end()};
}

std::vector<double> ConvertContext::attr_floats(std::string_view name, std::vector<double> fallback) const {
  const auto* a = find_attr(name);
  if (!a) return fallback;
  if (a->type() != ::onnx::AttributeProto::FLOATS) invalid(detail::concat("attribute '", name, "' must be floats"));
  return {a->floats().begin(), a->floats().end()};
}

std::optional<Tensor> ConvertContext::attr_tensor(std::string_view name) const {
  const auto* a = find_attr(name);
  if (!a) return std::nullopt;
  if (a->type() != ::onnx::AttributeProto::TENSOR) invalid(detail::concat("attribute '", name, "' must be a tensor"));
  return tensor_from_proto(a->t(), detail::concat("node '", node_label(node), "' attribute '", name, "'"));
}

Attrs ConvertContext::all_attrs() const {
  Attrs out;
  for (const auto& a : node.attribute()) {
    switch (a.type()) {
      case ::onnx::AttributeProto::INT: out[a.name()] = int64_t{a.i()}; break;
      case ::onnx::AttributeProto::FLOAT: out[a.name()] = static_cast<double>(a.f()); break;
      case ::onnx::AttributeProto::STRING: out[a.name()] = a.s(); break;
      case ::onnx::AttributeProto::INTS: out[a.name()] = std::vector<int64_t>(a.ints().begin(), a.ints().end()); break;
      case ::onnx::AttributeProto::FLOATS: out[a.name()] = std::vector<double>(a.floats().begin(), a.floats().end()); break;
      case ::onnx::AttributeProto::STRINGS:
        out[a.name()] = std::vector<std::string>(a.strings().begin(), a.strings().end());
        break;
      case ::onnx::AttributeProto::TENSOR: out[a.name()] = *attr_tensor(a.name()); break;
      default: unsupported(detail::concat("attribute '", a.name(), "' of a graph or sparse type"));
    }
  }
  return out;
}

std::optional<DType> ConvertContext::output_dtype(size_t k) const {
  auto it = infos_.find(node.output(static_cast<int>(k)));
  if (it == infos_.end() || !it->second->type().has_tensor_type()) return std::nullopt;
  int32_t et = it->second->type().tensor_type().elem_type();
  if (et == 0) return std::nullopt;
  return dtype_from_onnx(et, detail::concat("output of node '", node_label(node), "'"));
}

graph::Node* ConvertContext::emit(std::string_view op, std::vector<Value*> inputs, Attrs attrs,
                                  std::optional<DType> dtype) {
  std::vector<Value*> outs;
  for (size_t k = 0; k < num_outputs(); ++k) {
    const std::string& name = node.output(static_cast<int>(k));
    std::optional<DType> dt = output_dtype(k);
    if (!dt) dt = dtype;
    if (!dt) dt = !inputs.empty() && inputs[0] ? inputs[0]->dtype : DType::f32;
    std::optional<graph::SymShape> shape;
    auto it = infos_.find(name);
    if (it != infos_.end()) shape = sym_shape_from_onnx(*it->second);
    // An unused optional output (empty name) still needs a value: give it a generated name.
    Value* v = g.add_value(name.empty() || g.find_value(name) ? "" : name, *dt, shape);
    outs.push_back(v);
    if (!name.empty()) produced.emplace_back(name, v);
  }
  return g.add_node(op, std::move(inputs), std::move(outs), std::move(attrs), node.name());
}

Value* ConvertContext::temp(std::string_view op, std::vector<Value*> inputs, Attrs attrs, DType dtype) {
  return g.add_op(op, std::move(inputs), std::move(attrs), dtype);
}

Value* ConvertContext::constant(const Tensor& t) { return g.add_constant({}, t); }

Value* ConvertContext::int_constant(const std::vector<int64_t>& values) {
  return constant(Tensor::from_vector(values));
}

void ConvertContext::alias_output(size_t k, Value* v) {
  const std::string& name = node.output(static_cast<int>(k));
  if (!name.empty()) produced.emplace_back(name, v);
}

std::vector<std::string> ConverterTable::op_types() const {
  std::vector<std::string> out;
  for (const auto& [name, fn] : fns_) out.push_back(name);
  return out;
}

const ConverterTable& converter_table() {
  static const ConverterTable table = [] {
    ConverterTable t;
    register_elementwise_converters(t);
    register_shape_converters(t);
    register_nn_converters(t);
    register_reduce_converters(t);
    register_inference_converters(t);
    register_quant_converters(t);
    register_extra_converters(t);
    register_indexing_converters(t);
    register_rnn_converters(t);
    register_control_converters(t);
    register_sequence_converters(t);
    register_signal_converters(t);
    register_training_converters(t);
    register_vision_converters(t);
    register_random_converters(t);
    return t;
  }();
  return table;
}

std::optional<graph::SymShape> sym_shape_from_onnx(const ::onnx::ValueInfoProto& info) {
  if (!info.type().has_tensor_type() || !info.type().tensor_type().has_shape()) return std::nullopt;
  graph::SymShape s;
  for (const auto& d : info.type().tensor_type().shape().dim()) {
    if (d.has_dim_value()) s.push_back(graph::Dim::fixed(d.dim_value()));
    else if (d.has_dim_param() && !d.dim_param().empty()) s.push_back(graph::Dim::named(d.dim_param()));
    else s.push_back(graph::Dim{});
  }
  return s;
}

}  // namespace kiln::io
