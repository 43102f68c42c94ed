#include "kiln/io/onnx/onnx_import.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <onnx/checker.h>
#include <onnx/shape_inference/implementation.h>

#include "kiln/core/error.h"
#include "kiln/io/onnx/onnx_convert.h"
#include "kiln/io/onnx/onnx_subgraph.h"
#include "kiln/io/onnx/tensor_proto.h"

namespace kiln::io {

namespace {

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

int64_t default_domain_opset(const ::onnx::ModelProto& model, std::string_view source) {
  int64_t opset = -1;
  for (const auto& imp : model.opset_import())
    if (imp.domain().empty() || imp.domain() == "ai.onnx") opset = imp.version();
  KILN_CHECK_AS(NotImplementedError, opset >= 0, source, ": the model imports no opset of the default ONNX domain");
  KILN_CHECK_AS(NotImplementedError, opset >= kMinImportOpset && opset <= kMaxImportOpset, source,
                ": ONNX opset ", opset, " is not supported (Kiln imports opsets ", kMinImportOpset, "-",
                kMaxImportOpset, ")");
  return opset;
}

// ONNX 1.12's shape inference divides by strides and dilations without checking them (a stride of
// 0 is a SIGFPE, found by fuzzing): reject such attributes before it runs.
void check_window_attributes(const ::onnx::GraphProto& g, std::string_view source) {
  static const std::set<std::string> kWindowed = {"Conv",    "ConvTranspose", "ConvInteger", "QLinearConv",
                                                  "MaxPool", "AveragePool",   "LpPool",      "MaxUnpool"};
  for (const auto& node : g.node()) {
    for (const auto& a : node.attribute()) {  // control-flow bodies
      if (a.has_g()) check_window_attributes(a.g(), source);
      for (const auto& sub : a.graphs()) check_window_attributes(sub, source);
    }
    if (!kWindowed.count(node.op_type())) continue;
    for (const auto& a : node.attribute()) {
      bool positive = a.name() == "strides" || a.name() == "dilations" || a.name() == "kernel_shape";
      bool non_negative = a.name() == "pads" || a.name() == "output_padding";
      for (int64_t v : a.ints())
        KILN_CHECK((!positive || v > 0) && (!non_negative || v >= 0), source, ": node '", node.name(), "' (",
                   node.op_type(), "): attribute ", a.name(), " has the invalid value ", v);
    }
  }
}

// Runs ONNX's checker and shape inference; their failures become one-line Kiln errors.
void check_and_infer(::onnx::ModelProto& model, std::string_view source) {
  check_window_attributes(model.graph(), source);
  try {
    ::onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    throw ValueError(detail::concat(source, ": invalid ONNX model: ", one_line(e.what())));
  }
  try {
    // error_mode 0: an op whose inference ONNX cannot do (an old opset's quirk) leaves its outputs
    // unknown, but a declared shape that contradicts an inferred one still throws. No strict type
    // check: old exporters wrote types their opset's schema did not list (an int64 Constant at
    // opset 6); a real type error surfaces when the node's kernel runs, naming the node.
    ::onnx::ShapeInferenceOptions options(/*check_type=*/false, /*error_mode=*/0, /*data_prop=*/true);
    ::onnx::shape_inference::InferShapes(model, ::onnx::OpSchemaRegistry::Instance(), options);
  } catch (const std::exception& e) {
    throw ValueError(detail::concat(source, ": shapes or types contradict the graph: ", one_line(e.what())));
  }
}

using ValueMap = std::map<std::string, Value*, std::less<>>;

// A declared graph input; `fallback` types it where the proto does not (a body's input).
void add_graph_input(graph::Graph& g, ValueMap& values, const ::onnx::ValueInfoProto& in,
                     std::optional<DType> fallback, std::string_view source) {
  const auto& type = in.type();
  std::optional<graph::SymShape> shape;
  DType dt = DType::f32;
  if (type.has_tensor_type() && type.tensor_type().elem_type() != 0) {
    dt = dtype_from_onnx(type.tensor_type().elem_type(), detail::concat(source, ": input '", in.name(), "'"));
    shape = sym_shape_from_onnx(in);
  } else {
    KILN_CHECK_AS(NotImplementedError, (!type.has_sequence_type() && !type.has_map_type() && !type.has_optional_type()) &&
                  fallback, source, ": input '", in.name(),
                  "' is not a tensor (sequences, maps and optionals are not supported)");
    dt = *fallback;
  }
  values[in.name()] = g.add_input(in.name(), dt, shape.value_or(graph::SymShape{}));
  if (!shape) g.inputs().back()->shape.reset();
}

// Converts gp's nodes and marks its outputs; `values` holds its inputs and constants already.
void convert_nodes(const ::onnx::GraphProto& gp, graph::Graph& g, int64_t opset, ValueMap& values,
                   std::string_view source) {
  std::map<std::string, const ::onnx::ValueInfoProto*, std::less<>> infos;
  for (const auto& vi : gp.value_info()) infos[vi.name()] = &vi;
  for (const auto& vi : gp.output()) infos[vi.name()] = &vi;

  const ConverterTable& table = converter_table();
  for (const auto& node : gp.node()) {
    const std::string& domain = node.domain();
    std::string label = node.name().empty() ? (node.output_size() ? node.output(0) : node.op_type()) : node.name();
    KILN_CHECK_AS(NotImplementedError, domain.empty() || domain == "ai.onnx", source, ": operator ", domain, ".",
                  node.op_type(), " (node '", label, "') is not supported: only the default ONNX domain is");
    Converter fn = table.find(node.op_type());
    if (!fn)
      throw NotImplementedError(detail::concat(source, ": ONNX operator ", node.op_type(), " (opset ", opset,
                                               ", node '", label, "') is not supported"));
    ConvertContext ctx(g, opset, node, values, infos);
    try {
      fn(ctx);
    } catch (const NotImplementedError& e) {
      throw NotImplementedError(detail::concat(source, ": ", e.what()));
    } catch (const Error& e) {
      throw ValueError(detail::concat(source, ": ", e.what()));
    }
    for (auto& [name, v] : ctx.produced) values[name] = v;
    for (int k = 0; k < node.output_size(); ++k) {
      const std::string& out = node.output(k);
      if (out.empty()) continue;
      KILN_ASSERT(values.count(out), "converter for ", node.op_type(), " did not produce output '", out, "'");
    }
  }

  for (const auto& out : gp.output()) {
    KILN_CHECK_AS(NotImplementedError, !out.type().has_sequence_type() && !out.type().has_optional_type() &&
                  !out.type().has_map_type(), source, ": output '", out.name(),
                  "' is not a tensor (sequences, maps and optionals are not supported)");
    auto it = values.find(out.name());
    KILN_CHECK(it != values.end(), source, ": graph output '", out.name(), "' is never produced");
    Value* v = it->second;
    // An output that is a graph input or a constant still gets a node, so that outputs are
    // always produced values with the declared name (a copy is cheap and rare).
    if (!v->producer || v->name != out.name()) {
      Value* fresh = g.add_value(v->name == out.name() ? "" : out.name(), v->dtype, v->shape);
      g.add_node("clone", {v}, {fresh});
      v = fresh;
    }
    g.mark_output(v);
  }
}

graph::Graph convert_model(const ::onnx::ModelProto& model, std::string_view source) {
  int64_t opset = default_domain_opset(model, source);
  const ::onnx::GraphProto& gp = model.graph();
  graph::Graph g;
  g.opset = opset;
  g.producer = model.producer_name() + (model.producer_version().empty() ? "" : " " + model.producer_version());

  ValueMap values;
  for (const auto& init : gp.initializer()) {
    std::string ctx = detail::concat(source, ": initializer '", init.name(), "'");
    values[init.name()] = g.add_constant(init.name(), tensor_from_proto(init, ctx));
  }
  KILN_CHECK_AS(NotImplementedError, gp.sparse_initializer_size() == 0, source, ": sparse initializers are not supported");
  for (const auto& in : gp.input()) {
    if (values.count(in.name())) continue;  // IR < 4 lists initializers among the inputs
    add_graph_input(g, values, in, std::nullopt, source);
  }
  convert_nodes(gp, g, opset, values, source);
  graph::verify(g, "ONNX import");
  return g;
}

// The names a graph reads without defining them (its nested graphs' reads included).
void free_names(const ::onnx::GraphProto& gp, std::vector<std::string>& out) {
  std::set<std::string> defined;
  for (const auto& in : gp.input()) defined.insert(in.name());
  for (const auto& init : gp.initializer()) defined.insert(init.name());
  auto read = [&](const std::string& name) {
    if (!name.empty() && !defined.count(name) && std::find(out.begin(), out.end(), name) == out.end())
      out.push_back(name);
  };
  for (const auto& node : gp.node()) {
    for (const auto& in : node.input()) read(in);
    for (const auto& a : node.attribute()) {
      std::vector<std::string> inner;
      if (a.has_g()) free_names(a.g(), inner);
      for (const auto& sub : a.graphs()) free_names(sub, inner);
      for (const auto& name : inner) read(name);
    }
    for (const auto& o : node.output()) defined.insert(o);
  }
  for (const auto& o : gp.output()) read(o.name());
}

}  // namespace

std::vector<OuterRead> outer_reads(const ConvertContext& ctx, const std::vector<const ::onnx::GraphProto*>& bodies) {
  std::vector<std::string> names;
  for (const auto* b : bodies) free_names(*b, names);
  std::vector<OuterRead> out;
  for (const auto& name : names) {
    auto it = ctx.scope().find(name);
    if (it == ctx.scope().end()) ctx.invalid(detail::concat("a body reads '", name, "', which no enclosing graph defines"));
    out.push_back({name, it->second});
  }
  return out;
}

std::vector<Value*> captured_inputs(const std::vector<OuterRead>& outer) {
  std::vector<Value*> out;
  for (const OuterRead& r : outer)
    if (!r.value->is_constant() && std::find(out.begin(), out.end(), r.value) == out.end()) out.push_back(r.value);
  return out;
}

std::shared_ptr<graph::Graph> import_body(const ConvertContext& ctx, const ::onnx::GraphProto& body,
                                          const std::vector<OuterRead>& outer,
                                          const std::vector<std::optional<DType>>& input_dtypes,
                                          std::string_view label) {
  std::string source(label);
  auto g = std::make_shared<graph::Graph>();
  g->opset = ctx.opset;
  ValueMap values;
  for (const auto& init : body.initializer())
    values[init.name()] = g->add_constant(init.name(), tensor_from_proto(init, detail::concat(source, ": initializer '", init.name(), "'")));
  KILN_CHECK_AS(NotImplementedError, body.sparse_initializer_size() == 0, source, ": sparse initializers are not supported");
  for (int i = 0; i < body.input_size(); ++i) {
    size_t k = static_cast<size_t>(i);
    add_graph_input(*g, values, body.input(i), k < input_dtypes.size() ? input_dtypes[k] : std::nullopt, source);
  }
  // Outer reads, in captured_inputs' order; two names of one outer value (an Identity's alias)
  // share one body value, named by the first read (a body defines none of these names itself).
  std::map<const Value*, Value*> inner;
  for (const OuterRead& r : outer) {
    Value*& v = inner[r.value];
    if (!v && r.value->is_constant()) v = g->add_constant(r.name, r.value->constant);
    if (!v) {
      v = g->add_input(r.name, r.value->dtype, r.value->shape.value_or(graph::SymShape{}));
      if (!r.value->shape) v->shape.reset();
    }
    values[r.name] = v;
  }
  convert_nodes(body, *g, ctx.opset, values, source);
  return g;
}

graph::Graph import_onnx_bytes(std::string_view bytes, std::string_view source) {
  ::onnx::ModelProto model;
  KILN_CHECK_AS(IoError, bytes.size() < (size_t{1} << 31), source, ": model larger than 2 GiB");
  KILN_CHECK_AS(IoError, model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())), source,
                ": not a valid ONNX model (protobuf parse failed: truncated or corrupt file?)");
  KILN_CHECK_AS(IoError, model.has_graph(), source, ": not a valid ONNX model (no graph)");
  check_and_infer(model, source);
  return convert_model(model, source);
}

graph::Graph load_onnx(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  KILN_CHECK_AS(IoError, f.good(), path, ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  KILN_CHECK_AS(IoError, !f.bad(), path, ": read failed");
  return import_onnx_bytes(ss.str(), path);
}

}  // namespace kiln::io
