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

// The one other domain Kiln imports: ONNX's optimiser steps (Adagrad, Momentum, Adam). Their
// converters are registered under "<domain>.<op type>" (convert_training.cpp).
constexpr std::string_view kTrainingDomain = "ai.onnx.preview.training";

bool is_default_domain(std::string_view domain) { return domain.empty() || domain == "ai.onnx"; }

int64_t default_domain_opset(const ::onnx::ModelProto& model, std::string_view source) {
  int64_t opset = -1;
  bool training = false;
  for (const auto& imp : model.opset_import()) {
    if (is_default_domain(imp.domain())) opset = imp.version();
    training = training || imp.domain() == kTrainingDomain;
  }
  // A model of training ops alone uses no default-domain op (the checker enforces it): any opset does.
  if (opset < 0 && training) opset = kMaxImportOpset;
  KILN_CHECK_AS(NotImplementedError, opset >= 0, source, ": the model imports no opset of the default ONNX domain");
  KILN_CHECK_AS(NotImplementedError, opset >= kMinImportOpset && opset <= kMaxImportOpset, source,
                ": ONNX opset ", opset, " is not supported (Kiln imports opsets ", kMinImportOpset, "-",
                kMaxImportOpset, ")");
  return opset;
}

// Ranks the graph declares (initializers, inputs, value_info), inherited by bodies.
using DeclaredRanks = std::map<std::string, int, std::less<>>;

// A name declared twice with different ranks (an input also listed as an output of another
// shape) is refused too: inference would read one declaration's dims with the other's rank.
void add_declared_ranks(const ::onnx::GraphProto& g, DeclaredRanks& ranks, std::string_view source) {
  DeclaredRanks here;
  auto add = [&](const std::string& name, int rank) {
    auto [it, fresh] = here.emplace(name, rank);
    KILN_CHECK(fresh || it->second == rank, source, ": value '", name, "' is declared with rank ", it->second,
               " and with rank ", rank);
    ranks[name] = rank;
  };
  for (const auto& t : g.initializer()) add(t.name(), t.dims_size());
  auto add_info = [&](const ::onnx::ValueInfoProto& v) {
    if (v.type().has_tensor_type() && v.type().tensor_type().has_shape())
      add(v.name(), v.type().tensor_type().shape().dim_size());
  };
  for (const auto& v : g.input()) add_info(v);
  for (const auto& v : g.value_info()) add_info(v);
  for (const auto& v : g.output()) add_info(v);
}

// ONNX 1.12's shape inference trusts what it reads: it divides by strides and dilations without
// checking them (a stride of 0 is a SIGFPE), and a convolution without kernel_shape takes the
// window from the weight's dims and then reads one per spatial dim of the input (a 3-d
// ConvTranspose with a rank-2 weight read past the end: a SEGV), both found by fuzzing. Reject
// such nodes before it runs. (A weight whose rank only inference knows is not checked here.)
void check_window_attributes(const ::onnx::GraphProto& g, std::string_view source, DeclaredRanks ranks = {}) {
  static const std::set<std::string> kWindowed = {"Conv",    "ConvTranspose", "ConvInteger", "QLinearConv",
                                                  "MaxPool", "AveragePool",   "LpPool",      "MaxUnpool"};
  add_declared_ranks(g, ranks, source);
  for (const auto& node : g.node()) {
    for (const auto& a : node.attribute()) {  // control-flow bodies
      if (a.has_g()) check_window_attributes(a.g(), source, ranks);
      for (const auto& sub : a.graphs()) check_window_attributes(sub, source, ranks);
    }
    // Inputs whose rank ONNX 1.12's inference of the op indexes without checking (STFT read past a
    // rank-1 signal's dims: a SEGV found by fuzzing): {input, min rank, max rank}.
    struct RankRule {
      int input, min_rank, max_rank;
    };
    static const std::map<std::string, RankRule, std::less<>> kRankRules = {{"STFT", {0, 3, 3}},
                                                                             {"DFT", {0, 3, 64}}};
    auto rule = kRankRules.find(node.op_type());
    if (rule != kRankRules.end() && node.input_size() > rule->second.input) {
      const RankRule& r = rule->second;
      auto x = ranks.find(node.input(r.input));
      if (x != ranks.end())
        KILN_CHECK(x->second >= r.min_rank && x->second <= r.max_rank, source, ": node '", node.name(), "' (",
                   node.op_type(), "): input '", node.input(r.input), "' has rank ", x->second, ", expected ",
                   r.min_rank, r.min_rank == r.max_rank ? "" : " or more");
    }
    if (!kWindowed.count(node.op_type())) continue;
    const bool conv = node.op_type().find("Conv") != std::string::npos;
    const int w_at = node.op_type() == "QLinearConv" ? 3 : 1;
    bool has_kernel_shape = false;
    for (const auto& a : node.attribute()) has_kernel_shape = has_kernel_shape || a.name() == "kernel_shape";
    if (conv && !has_kernel_shape && node.input_size() > w_at) {
      auto x = ranks.find(node.input(0)), w = ranks.find(node.input(w_at));
      if (x != ranks.end() && w != ranks.end())
        KILN_CHECK(x->second == w->second, source, ": node '", node.name(), "' (", node.op_type(), "): weight '",
                   node.input(w_at), "' has rank ", w->second, " but input '", node.input(0), "' has rank ",
                   x->second);
    }
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
                     std::optional<BodyInputType> fallback, std::string_view source) {
  OnnxValueType t = onnx_value_type(in.type(), detail::concat(source, ": input '", in.name(), "'"));
  if (!t.dtype) {
    KILN_CHECK_AS(NotImplementedError, fallback, source, ": input '", in.name(), "' has no element type");
    t.dtype = fallback->dtype;
    if (in.type().value_case() == ::onnx::TypeProto::VALUE_NOT_SET) t.kind = fallback->kind;
  }
  Value* v = g.add_input(in.name(), *t.dtype, t.shape.value_or(graph::SymShape{}));
  if (!t.shape) v->shape.reset();
  v->kind = t.kind;
  values[in.name()] = v;
}

// Kinds from ONNX's inferred types: a node whose output ONNX types as a sequence or optional
// makes a value of that kind (converters that know better have set it already).
void type_from_infos(const ::onnx::NodeProto& node, const ValueMap& values,
                     const std::map<std::string, const ::onnx::ValueInfoProto*, std::less<>>& infos,
                     std::string_view source) {
  for (const auto& out : node.output()) {
    auto info = infos.find(out);
    auto it = values.find(out);
    if (out.empty() || info == infos.end() || it == values.end() || info->second->type().has_tensor_type()) continue;
    Value* v = it->second;
    if (!v->is_tensor() || !v->producer || v->producer->outputs.empty()) continue;
    OnnxValueType t = onnx_value_type(info->second->type(), detail::concat(source, ": value '", out, "'"));
    v->kind = t.kind;
    if (t.dtype) v->dtype = *t.dtype;
    v->shape.reset();
  }
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
    const bool default_domain = is_default_domain(domain);
    KILN_CHECK_AS(NotImplementedError, default_domain || domain == kTrainingDomain, source, ": operator ", domain,
                  ".", node.op_type(), " (node '", label,
                  "') is not supported: only the default ONNX domain and ai.onnx.preview.training are");
    Converter fn = table.find(default_domain ? node.op_type() : domain + "." + node.op_type());
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
    type_from_infos(node, values, infos, source);
    for (int k = 0; k < node.output_size(); ++k) {
      const std::string& out = node.output(k);
      if (out.empty()) continue;
      KILN_ASSERT(values.count(out), "converter for ", node.op_type(), " did not produce output '", out, "'");
    }
  }

  for (const auto& out : gp.output()) {
    onnx_value_type(out.type(), detail::concat(source, ": output '", out.name(), "'"));  // refuses maps
    auto it = values.find(out.name());
    KILN_CHECK(it != values.end(), source, ": graph output '", out.name(), "' is never produced");
    Value* v = it->second;
    // An output that is a graph input or a constant still gets a node, so that outputs are
    // always produced values with the declared name (a copy is cheap and rare).
    if (!v->producer || v->name != out.name()) {
      Value* fresh = g.add_value(v->name == out.name() ? "" : out.name(), v->dtype, v->shape);
      fresh->kind = v->kind;
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

OnnxValueType onnx_value_type(const ::onnx::TypeProto& type, std::string_view context) {
  auto tensor = [&](const ::onnx::TypeProto::Tensor& t, OnnxValueType& out) {
    if (t.elem_type() != 0) out.dtype = dtype_from_onnx(t.elem_type(), context);
  };
  OnnxValueType out;
  if (type.has_tensor_type()) {
    tensor(type.tensor_type(), out);
    if (type.tensor_type().has_shape()) {
      graph::SymShape s;
      for (const auto& d : type.tensor_type().shape().dim()) {
        if (d.has_dim_value()) s.push_back(graph::Dim::fixed(d.dim_value()));
        else if (d.has_dim_param() && !d.dim_param().empty()) s.push_back(graph::Dim::named(d.dim_param()));
        else s.push_back(graph::Dim{});
      }
      out.shape = std::move(s);
    }
    return out;
  }
  auto sequence_of_tensors = [](const ::onnx::TypeProto& t) {
    return t.has_sequence_type() && t.sequence_type().elem_type().has_tensor_type();
  };
  if (sequence_of_tensors(type)) {
    out.kind = graph::ValueKind::sequence;
    tensor(type.sequence_type().elem_type().tensor_type(), out);
    return out;
  }
  if (type.has_optional_type()) {
    const auto& e = type.optional_type().elem_type();
    if (e.has_tensor_type()) {
      out.kind = graph::ValueKind::optional_tensor;
      tensor(e.tensor_type(), out);
      return out;
    }
    if (sequence_of_tensors(e)) {
      out.kind = graph::ValueKind::optional_sequence;
      tensor(e.sequence_type().elem_type().tensor_type(), out);
      return out;
    }
  }
  if (type.value_case() == ::onnx::TypeProto::VALUE_NOT_SET) return out;  // untyped: a tensor of unknown dtype
  throw NotImplementedError(detail::concat(context, " is a map, a sparse tensor or a nested sequence/optional (Kiln "
                                                    "values are tensors, sequences of tensors and their optionals)"));
}

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
                                          const std::vector<std::optional<BodyInputType>>& input_types,
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
    add_graph_input(*g, values, body.input(i), k < input_types.size() ? input_types[k] : std::nullopt, source);
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
      v->kind = r.value->kind;
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
