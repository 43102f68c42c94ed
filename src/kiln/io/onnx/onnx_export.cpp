#include "kiln/io/onnx/onnx_export.h"

#include <cmath>
#include <limits>
#include <numeric>

#include <onnx/checker.h>

#include "kiln/core/error.h"
#include "kiln/io/atomic_file.h"
#include "kiln/io/onnx/tensor_proto.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::io {

namespace {

using graph::Node;
using graph::Value;
using NodeProto = ::onnx::NodeProto;

class Exporter {
 public:
  explicit Exporter(::onnx::GraphProto& gp) : gp_(gp) {}

  NodeProto& node(const std::string& op_type, std::vector<std::string> inputs, std::vector<std::string> outputs) {
    NodeProto& n = *gp_.add_node();
    n.set_op_type(op_type);
    n.set_name(op_type + "_" + std::to_string(gp_.node_size()));
    for (auto& i : inputs) n.add_input(i);
    for (auto& o : outputs) n.add_output(o);
    return n;
  }
  // A node with one fresh output; returns the output's name.
  std::string step(const std::string& op_type, std::vector<std::string> inputs) {
    std::string out = fresh(op_type);
    node(op_type, std::move(inputs), {out});
    return out;
  }
  std::string fresh(const std::string& stem) { return "_" + stem + "_" + std::to_string(counter_++); }
  std::string initializer(const Tensor& t, const std::string& stem) {
    std::string name = fresh(stem);
    *gp_.add_initializer() = tensor_to_proto(ops::contiguous(t), name);
    return name;
  }
  std::string ints(const std::vector<int64_t>& v) { return initializer(Tensor::from_vector(v), "ints"); }
  std::string scalar(double v, DType dt) { return initializer(Tensor::scalar(v, dt), "c"); }

 private:
  ::onnx::GraphProto& gp_;
  int64_t counter_ = 0;
};

void set_int(NodeProto& n, const std::string& name, int64_t v) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::INT);
  a->set_i(v);
}
void set_float(NodeProto& n, const std::string& name, double v) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::FLOAT);
  a->set_f(static_cast<float>(v));
}
void set_ints(NodeProto& n, const std::string& name, const std::vector<int64_t>& v) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

[[noreturn]] void cannot(const Node& n, std::string_view why) {
  throw NotImplementedError(detail::concat("ONNX export: node '", n.name, "' (", n.op_name(), "): ", why));
}

int64_t rank_of(const Node& n, const Value* v) {
  if (!v->shape) cannot(n, detail::concat("the rank of %", v->name, " is unknown"));
  return static_cast<int64_t>(v->shape->size());
}

std::string in_name(const Value* v) { return v ? v->name : std::string(); }

// GELU from Erf (exact) or Tanh (approximate), on input `x`, output `out`.
void emit_gelu(Exporter& e, const std::string& x, const std::string& out, bool tanh_form, DType dt) {
  std::string inner;
  if (!tanh_form) {
    inner = e.step("Erf", {e.step("Div", {x, e.scalar(std::sqrt(2.0), dt)})});
  } else {
    std::string cube = e.step("Mul", {e.step("Mul", {x, x}), x});
    std::string poly = e.step("Add", {x, e.step("Mul", {cube, e.scalar(0.044715, dt)})});
    inner = e.step("Tanh", {e.step("Mul", {poly, e.scalar(std::sqrt(2.0 / M_PI), dt)})});
  }
  std::string half_x = e.step("Mul", {x, e.scalar(0.5, dt)});
  e.node("Mul", {half_x, e.step("Add", {inner, e.scalar(1.0, dt)})}, {out});
}

void emit_activation(Exporter& e, const std::string& act, const std::string& x, const std::string& out, DType dt,
                     const Node& n) {
  if (act == "none") e.node("Identity", {x}, {out});
  else if (act == "relu") e.node("Relu", {x}, {out});
  else if (act == "gelu" || act == "gelu_tanh") emit_gelu(e, x, out, act == "gelu_tanh", dt);
  else cannot(n, detail::concat("activation \"", act, "\""));
}

void export_linear(Exporter& e, const Node& n, const std::string& final_out) {
  const Value* x = n.input(0);
  const Value* w = n.input(1);
  const Value* b = n.input(2);
  const Value* residual = n.input(3);  // fused by the compiler: written back as an Add
  const std::string out = residual ? e.fresh("linear_out") : final_out;
  std::string act = n.op_name() == "linear_act" ? n.attr_string("activation", "none") : "none";
  std::string y = act == "none" ? out : e.fresh("linear");
  if (rank_of(n, x) == 2) {
    NodeProto& g = e.node("Gemm", {x->name, w->name, in_name(b)}, {y});
    if (!b) g.mutable_input()->RemoveLast();
    set_int(g, "transB", 1);
  } else {
    std::string wt = w->is_constant() ? e.initializer(ops::transpose(w->constant, 0, 1), w->name + "_t")
                                      : e.step("Transpose", {w->name});
    if (b) e.node("Add", {e.step("MatMul", {x->name, wt}), b->name}, {y});
    else e.node("MatMul", {x->name, wt}, {y});
  }
  if (act != "none") emit_activation(e, act, y, out, x->dtype, n);
  if (residual) e.node("Add", {out, residual->name}, {final_out});
}

void export_conv(Exporter& e, const Node& n, const std::string& out) {
  const Value* w = n.input(1);
  if (!w->shape || !graph::concrete_shape(*w->shape)) cannot(n, "the weight shape is unknown");
  Shape ws = *graph::concrete_shape(*w->shape);
  std::string act = n.attr_string("activation", "none");
  bool pooled = n.has_attr("pool");
  std::string act_out = pooled ? e.fresh("conv_act") : out;
  std::string y = act == "none" ? act_out : e.fresh("conv");
  NodeProto& c = e.node("Conv", {n.input(0)->name, w->name, in_name(n.input(2))}, {y});
  if (!n.input(2)) c.mutable_input()->RemoveLast();
  set_ints(c, "kernel_shape", {ws[2], ws[3]});
  set_ints(c, "strides", n.attr_ints("strides", {1, 1}));
  set_ints(c, "pads", n.attr_ints("pads", {0, 0, 0, 0}));
  set_ints(c, "dilations", n.attr_ints("dilations", {1, 1}));
  set_int(c, "group", n.attr_int("group", 1));
  if (act != "none") emit_activation(e, act, y, act_out, n.input(0)->dtype, n);
  if (pooled) {  // a max pool fused in by fuse_patterns
    NodeProto& p = e.node("MaxPool", {act_out}, {out});
    set_ints(p, "kernel_shape", n.attr_ints("pool_kernel_shape"));
    set_ints(p, "strides", n.attr_ints("pool_strides", {1, 1}));
    set_ints(p, "pads", n.attr_ints("pool_pads", {0, 0, 0, 0}));
    if (n.attr_int("pool_ceil_mode", 0)) set_int(p, "ceil_mode", 1);
  }
}

void export_pool(Exporter& e, const Node& n, const std::string& out) {
  bool is_max = n.op_name() == "max_pool2d";
  NodeProto& p = e.node(is_max ? "MaxPool" : "AveragePool", {n.input(0)->name}, {out});
  set_ints(p, "kernel_shape", n.attr_ints("kernel_shape"));
  set_ints(p, "strides", n.attr_ints("strides", {1, 1}));
  set_ints(p, "pads", n.attr_ints("pads", {0, 0, 0, 0}));
  if (n.attr_int("ceil_mode", 0)) set_int(p, "ceil_mode", 1);
  if (!is_max) set_int(p, "count_include_pad", n.attr_int("count_include_pad", 0));
}

void export_adaptive_pool(Exporter& e, const Node& n, const std::string& out) {
  std::vector<int64_t> size = n.attr_ints("output_size");
  if (size == std::vector<int64_t>{1, 1}) {
    e.node("GlobalAveragePool", {n.input(0)->name}, {out});
    return;
  }
  const Value* x = n.input(0);
  if (rank_of(n, x) != 4 || !(*x->shape)[2].is_fixed() || !(*x->shape)[3].is_fixed())
    cannot(n, "output sizes other than 1x1 need a static spatial size");
  int64_t h = (*x->shape)[2].size, w = (*x->shape)[3].size;
  if (h % size[0] || w % size[1]) cannot(n, "the input size is not a multiple of the output size");
  NodeProto& p = e.node("AveragePool", {x->name}, {out});
  set_ints(p, "kernel_shape", {h / size[0], w / size[1]});
  set_ints(p, "strides", {h / size[0], w / size[1]});
}

void export_attention(Exporter& e, const Node& n, const std::string& out) {
  const Value* q = n.input(0);
  if (rank_of(n, q) != 4) cannot(n, "expects (B, H, T, D)");
  const graph::Dim& t = (*q->shape)[2];
  const graph::Dim& d = (*q->shape)[3];
  if (!d.is_fixed()) cannot(n, "the head size must be static");
  DType dt = q->dtype;
  std::string kt = e.fresh("kT");
  set_ints(e.node("Transpose", {n.input(1)->name}, {kt}), "perm", {0, 1, 3, 2});
  std::string scores = e.step("Mul", {e.step("MatMul", {q->name, kt}), e.scalar(1.0 / std::sqrt(double(d.size)), dt)});
  if (n.attr_int("causal", 0)) {
    if (!t.is_fixed()) cannot(n, "a causal mask needs a static sequence length");
    int64_t T = t.size;
    std::vector<float> mask(static_cast<size_t>(T * T), 0.0f);
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = i + 1; j < T; ++j) mask[static_cast<size_t>(i * T + j)] = -std::numeric_limits<float>::infinity();
    scores = e.step("Add", {scores, e.initializer(ops::to(Tensor::from_vector(mask, {T, T}), dt), "causal_mask")});
  }
  std::string probs = e.fresh("probs");
  set_int(e.node("Softmax", {scores}, {probs}), "axis", -1);
  e.node("MatMul", {probs, n.input(2)->name}, {out});
}

// Reshape to a shape of 0 (copy), -1 (infer) and fixed entries.
void reshape_to(Exporter& e, const std::string& x, const std::vector<int64_t>& shape, const std::string& out) {
  e.node("Reshape", {x, e.ints(shape)}, {out});
}

void export_flatten(Exporter& e, const Node& n, const std::string& out) {
  const Value* x = n.input(0);
  int64_t r = rank_of(n, x);
  int64_t s = n.attr_int("start_dim", 0), t = n.attr_int("end_dim", -1);
  if (r == 0) {
    reshape_to(e, x->name, {1}, out);
    return;
  }
  s = s < 0 ? s + r : s;
  t = t < 0 ? t + r : t;
  if (t == r - 1 && s == 1) {
    set_int(e.node("Flatten", {x->name}, {out}), "axis", 1);
    return;
  }
  std::vector<int64_t> shape(static_cast<size_t>(s), 0);  // leading dims copied
  shape.push_back(-1);
  for (int64_t i = t + 1; i < r; ++i) {
    const graph::Dim& dim = (*x->shape)[static_cast<size_t>(i)];
    if (!dim.is_fixed()) cannot(n, "trailing dims after the flattened range must be static");
    shape.push_back(dim.size);
  }
  reshape_to(e, x->name, shape, out);
}

void export_node(Exporter& e, const Node& n) {
  std::string_view op = n.op_name();
  const std::string out = n.outputs[0]->name;
  auto x = [&](size_t i) { return in_name(n.input(i)); };
  static const std::map<std::string_view, const char*> kSame = {
      {"add", "Add"}, {"sub", "Sub"}, {"mul", "Mul"}, {"div", "Div"}, {"pow", "Pow"}, {"neg", "Neg"},
      {"exp", "Exp"}, {"log", "Log"}, {"sqrt", "Sqrt"}, {"tanh", "Tanh"}, {"sigmoid", "Sigmoid"},
      {"relu", "Relu"}, {"abs", "Abs"}, {"matmul", "MatMul"}, {"erf", "Erf"}, {"where", "Where"},
      {"maximum", "Max"}, {"minimum", "Min"}, {"clone", "Identity"}, {"contiguous", "Identity"},
      {"eq", "Equal"}, {"lt", "Less"}, {"gt", "Greater"}, {"le", "LessOrEqual"}, {"ge", "GreaterOrEqual"}};
  if (auto it = kSame.find(op); it != kSame.end()) {
    std::vector<std::string> ins;
    for (size_t i = 0; i < n.inputs.size(); ++i) ins.push_back(x(i));
    e.node(it->second, ins, {out});
    return;
  }
  if (op == "linear" || op == "linear_act") return export_linear(e, n, out);
  if (op == "conv2d") return export_conv(e, n, out);
  if (op == "max_pool2d" || op == "avg_pool2d") return export_pool(e, n, out);
  if (op == "adaptive_avg_pool2d") return export_adaptive_pool(e, n, out);
  if (op == "scaled_dot_product_attention") return export_attention(e, n, out);
  if (op == "flatten") return export_flatten(e, n, out);
  if (op == "gelu") return emit_gelu(e, x(0), out, n.attr_string("approximate", "none") == "tanh", n.input(0)->dtype);
  if (op == "dropout") {
    e.node("Identity", {x(0)}, {out});
    return;
  }
  if (op == "batch_norm") {
    set_float(e.node("BatchNormalization", {x(0), x(1), x(2), x(3), x(4)}, {out}), "epsilon",
              n.attr_float("epsilon", 1e-5));
    return;
  }
  if (op == "layer_norm") {
    if (!n.input(1)) cannot(n, "ONNX LayerNormalization needs a scale");
    NodeProto& ln = e.node("LayerNormalization", {x(0), x(1), x(2)}, {out});
    if (!n.input(2)) ln.mutable_input()->RemoveLast();
    set_int(ln, "axis", n.attr_int("axis", -1));
    set_float(ln, "epsilon", n.attr_float("epsilon", 1e-5));
    return;
  }
  if (op == "softmax" || op == "log_softmax") {
    set_int(e.node(op == "softmax" ? "Softmax" : "LogSoftmax", {x(0)}, {out}), "axis", n.attr_int("axis", -1));
    return;
  }
  if (op == "embedding") {
    set_int(e.node("Gather", {x(0), x(1)}, {out}), "axis", 0);
    return;
  }
  if (op == "reshape") {
    if (n.input(1)) e.node("Reshape", {x(0), x(1)}, {out});
    else reshape_to(e, x(0), n.attr_ints("shape"), out);
    return;
  }
  if (op == "squeeze" || op == "unsqueeze") {
    std::vector<std::string> ins{x(0)};
    if (n.input(1)) ins.push_back(x(1));
    else if (n.has_attr("axes")) ins.push_back(e.ints(n.attr_ints("axes")));
    e.node(op == "squeeze" ? "Squeeze" : "Unsqueeze", ins, {out});
    return;
  }
  if (op == "permute" || op == "transpose") {
    std::vector<int64_t> perm;
    if (op == "permute") {
      perm = n.attr_ints("perm", {});
    } else {
      int64_t r = rank_of(n, n.input(0));
      perm.resize(static_cast<size_t>(r));
      std::iota(perm.begin(), perm.end(), 0);
      int64_t a = n.attr_int("dim0"), b = n.attr_int("dim1");
      std::swap(perm[static_cast<size_t>(a < 0 ? a + r : a)], perm[static_cast<size_t>(b < 0 ? b + r : b)]);
    }
    NodeProto& t = e.node("Transpose", {x(0)}, {out});
    if (!perm.empty()) set_ints(t, "perm", perm);
    return;
  }
  if (op == "slice") {
    if (n.inputs.size() >= 3) {
      std::vector<std::string> ins;
      for (size_t i = 0; i < n.inputs.size(); ++i) ins.push_back(x(i));
      e.node("Slice", ins, {out});
    } else {
      e.node("Slice", {x(0), e.ints({n.attr_int("start", 0)}), e.ints({n.attr_int("end")}),
                       e.ints({n.attr_int("dim")}), e.ints({n.attr_int("step", 1)})},
             {out});
    }
    return;
  }
  if (op == "cat") {
    std::vector<std::string> ins;
    for (size_t i = 0; i < n.inputs.size(); ++i) ins.push_back(x(i));
    set_int(e.node("Concat", ins, {out}), "axis", n.attr_int("axis", 0));
    return;
  }
  cannot(n, "no ONNX form");
}

void set_value_info(::onnx::ValueInfoProto& vi, const Value& v) {
  vi.set_name(v.name);
  auto* tt = vi.mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx_elem_type(v.dtype));
  if (!v.shape) return;
  auto* shape = tt->mutable_shape();
  for (const graph::Dim& d : *v.shape) {
    auto* dim = shape->add_dim();
    if (d.is_fixed()) dim->set_dim_value(d.size);
    else if (!d.symbol.empty()) dim->set_dim_param(d.symbol);
  }
}

}  // namespace

::onnx::ModelProto export_onnx(const graph::Graph& g) {
  ::onnx::ModelProto model;
  model.set_ir_version(8);
  model.set_producer_name("kiln");
  model.set_producer_version("0.1.0");
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kExportOpset);
  ::onnx::GraphProto& gp = *model.mutable_graph();
  gp.set_name("kiln");
  for (const auto& v : g.values())
    if (v->is_constant()) *gp.add_initializer() = tensor_to_proto(v->constant, v->name);
  for (const Value* in : g.inputs()) set_value_info(*gp.add_input(), *in);
  for (const Value* out : g.outputs()) set_value_info(*gp.add_output(), *out);
  Exporter e(gp);
  for (const auto& n : g.nodes()) {
    if (!n->subgraphs.empty()) cannot(*n, "cannot export control flow (a node with subgraphs) to ONNX");
    if (graph::runs_on_values(*n)) cannot(*n, "cannot export sequence or optional values to ONNX");
    if (n->outputs.size() != 1 && n->op_name() != "dropout")
      cannot(*n, detail::concat(n->outputs.size(), " outputs (only single-output ops export)"));
    export_node(e, *n);
  }
  return model;
}

void save_onnx(const graph::Graph& g, const std::string& path) {
  ::onnx::ModelProto model = export_onnx(g);
  try {
    ::onnx::checker::check_model(model);
  } catch (const std::exception& ex) {
    std::string msg = ex.what();
    for (char& c : msg)
      if (c == '\n') c = ' ';
    throw InternalError(detail::concat("ONNX export produced an invalid model: ", msg));
  }
  std::string bytes;
  KILN_CHECK_AS(IoError, model.SerializeToString(&bytes), path, ": cannot serialise the model (over 2 GiB?)");
  write_file_atomic(path, bytes);
}

}  // namespace kiln::io
