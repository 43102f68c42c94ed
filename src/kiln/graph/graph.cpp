#include "kiln/graph/graph.h"

#include <set>
#include <sstream>

#include "kiln/core/error.h"

namespace kiln::graph {

SymShape fixed_shape(const Shape& shape) {
  SymShape s;
  s.reserve(shape.size());
  for (int64_t d : shape) s.push_back(Dim::fixed(d));
  return s;
}

std::optional<Shape> concrete_shape(const SymShape& shape) {
  Shape out;
  out.reserve(shape.size());
  for (const Dim& d : shape) {
    if (!d.is_fixed()) return std::nullopt;
    out.push_back(d.size);
  }
  return out;
}

std::string sym_shape_str(const SymShape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    const Dim& d = shape[i];
    s += d.is_fixed() ? std::to_string(d.size) : (d.symbol.empty() ? "?" : d.symbol);
  }
  return s + "]";
}

namespace {

template <typename T>
std::string join_list(const std::vector<T>& v) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << "]";
  return os.str();
}

}  // namespace

std::string attr_str(const Attr& a) {
  return std::visit(
      [](const auto& v) -> std::string {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, int64_t>) return std::to_string(v);
        else if constexpr (std::is_same_v<V, double>) {
          std::ostringstream os;
          os << v;
          return os.str();
        } else if constexpr (std::is_same_v<V, std::string>) return "\"" + v + "\"";
        else if constexpr (std::is_same_v<V, Tensor>) return "tensor " + std::string(dtype_name(v.dtype())) + shape_str(v.shape());
        else return join_list(v);
      },
      a);
}

// ---- Node attribute access

namespace {

template <typename T>
const T* find_attr(const Node& n, std::string_view key) {
  auto it = n.attrs.find(key);
  if (it == n.attrs.end()) return nullptr;
  const T* v = std::get_if<T>(&it->second);
  if (!v) {
    // An int where a float is expected is fine in ONNX files written by hand; everything else is
    // a wrong attribute type.
    throw ValueError(detail::concat("node '", n.name, "' (", n.op_name(), "): attribute '", key,
                                    "' has the wrong type (", attr_str(it->second), ")"));
  }
  return v;
}

template <typename T>
const T& require_attr(const Node& n, std::string_view key) {
  const T* v = find_attr<T>(n, key);
  KILN_CHECK(v != nullptr, "node '", n.name, "' (", n.op_name(), "): missing attribute '", key, "'");
  return *v;
}

}  // namespace

int64_t Node::attr_int(std::string_view key) const { return require_attr<int64_t>(*this, key); }
int64_t Node::attr_int(std::string_view key, int64_t fallback) const {
  const int64_t* v = find_attr<int64_t>(*this, key);
  return v ? *v : fallback;
}
double Node::attr_float(std::string_view key) const {
  auto it = attrs.find(key);
  if (it != attrs.end())
    if (const int64_t* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  return require_attr<double>(*this, key);
}
double Node::attr_float(std::string_view key, double fallback) const {
  return has_attr(key) ? attr_float(key) : fallback;
}
const std::string& Node::attr_string(std::string_view key) const { return require_attr<std::string>(*this, key); }
std::string Node::attr_string(std::string_view key, std::string_view fallback) const {
  const std::string* v = find_attr<std::string>(*this, key);
  return v ? *v : std::string(fallback);
}
const std::vector<int64_t>& Node::attr_ints(std::string_view key) const {
  return require_attr<std::vector<int64_t>>(*this, key);
}
std::vector<int64_t> Node::attr_ints(std::string_view key, std::vector<int64_t> fallback) const {
  const auto* v = find_attr<std::vector<int64_t>>(*this, key);
  return v ? *v : fallback;
}
const std::vector<double>& Node::attr_floats(std::string_view key) const {
  return require_attr<std::vector<double>>(*this, key);
}
const Tensor& Node::attr_tensor(std::string_view key) const { return require_attr<Tensor>(*this, key); }
const Graph& Node::subgraph(std::string_view key) const {
  auto it = subgraphs.find(key);
  KILN_CHECK(it != subgraphs.end() && it->second, "node '", name, "' (", op_name(), "): missing subgraph '", key, "'");
  return *it->second;
}

// ---- Graph

std::string Graph::unique_name(std::string_view stem) {
  for (;;) {
    std::string name = std::string(stem) + std::to_string(name_counter_++);
    if (by_name_.find(name) == by_name_.end()) return name;
  }
}

Value* Graph::add_value(std::string name, DType dtype, std::optional<SymShape> shape) {
  if (name.empty()) name = unique_name("v");
  KILN_CHECK(by_name_.find(name) == by_name_.end(), "graph: value name '", name, "' is used twice");
  auto v = std::make_unique<Value>();
  v->id = next_id_++;
  v->name = std::move(name);
  v->dtype = dtype;
  v->shape = std::move(shape);
  Value* raw = v.get();
  by_name_.emplace(raw->name, raw);
  values_.push_back(std::move(v));
  return raw;
}

Value* Graph::add_input(std::string name, DType dtype, SymShape shape) {
  Value* v = add_value(std::move(name), dtype, std::move(shape));
  inputs_.push_back(v);
  return v;
}

Value* Graph::add_constant(std::string name, Tensor value) {
  Value* v = add_value(std::move(name), value.dtype(), fixed_shape(value.shape()));
  v->constant = std::move(value);
  return v;
}

Node* Graph::add_node(std::string_view op, std::vector<Value*> inputs, std::vector<Value*> outputs,
                      std::map<std::string, Attr, std::less<>> attrs, std::string name) {
  const ops::OpInfo* info = ops::find_op(op);
  if (!info) throw NotImplementedError(detail::concat("graph: no operator named '", op, "' in the ops registry"));
  auto n = std::make_unique<Node>();
  n->op = info;
  if (name.empty()) name = std::string(op);
  std::string unique = name;
  for (int64_t k = 1; node_names_.count(unique); ++k) unique = name + "_" + std::to_string(k);
  node_names_.insert(unique);
  n->name = std::move(unique);
  n->inputs = std::move(inputs);
  n->outputs = std::move(outputs);
  n->attrs = std::move(attrs);
  for (size_t k = 0; k < n->outputs.size(); ++k) {
    Value* out = n->outputs[k];
    KILN_ASSERT(out && !out->producer && !out->is_constant(), "graph: output ", k, " of node '", n->name,
                "' is already produced");
    out->producer = n.get();
    out->producer_output = static_cast<int>(k);
  }
  nodes_.push_back(std::move(n));
  return nodes_.back().get();
}

Value* Graph::add_op(std::string_view op, std::vector<Value*> inputs, std::map<std::string, Attr, std::less<>> attrs,
                     DType out_dtype, std::optional<SymShape> out_shape, std::string name) {
  Value* out = add_value({}, out_dtype, std::move(out_shape));
  add_node(op, std::move(inputs), {out}, std::move(attrs), std::move(name));
  return out;
}

Value* Graph::find_value(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

void Graph::rename(Value* v, std::string name) {
  if (v->name == name) return;
  KILN_CHECK(!name.empty() && by_name_.find(name) == by_name_.end(), "graph: value name '", name, "' is used twice");
  by_name_.erase(v->name);
  v->name = std::move(name);
  by_name_.emplace(v->name, v);
}

void Graph::replace_uses(Value* from, Value* to) {
  for (auto& n : nodes_)
    for (Value*& in : n->inputs)
      if (in == from) in = to;
  for (Value*& out : outputs_)
    if (out == from) out = to;
}

std::vector<int> Graph::use_counts() const {
  std::vector<int> uses(static_cast<size_t>(next_id_), 0);
  for (const auto& n : nodes_)
    for (const Value* in : n->inputs)
      if (in) ++uses[static_cast<size_t>(in->id)];
  for (const Value* out : outputs_) ++uses[static_cast<size_t>(out->id)];
  return uses;
}

size_t Graph::remove_unused() {
  std::vector<int> uses = use_counts();
  size_t removed = 0;
  // Walk backwards so a chain of dead nodes goes in one sweep.
  for (size_t i = nodes_.size(); i-- > 0;) {
    Node* n = nodes_[i].get();
    bool live = false;
    for (const Value* out : n->outputs) live = live || uses[static_cast<size_t>(out->id)] > 0;
    if (live) continue;
    for (const Value* in : n->inputs)
      if (in) --uses[static_cast<size_t>(in->id)];
    for (Value* out : n->outputs) out->producer = nullptr;
    node_names_.erase(n->name);
    nodes_[i].reset();
    ++removed;
  }
  std::erase(nodes_, nullptr);
  std::set<const Value*> inputs(inputs_.begin(), inputs_.end());
  std::erase_if(values_, [&](const std::unique_ptr<Value>& v) {
    bool dead = uses[static_cast<size_t>(v->id)] == 0 && !v->producer && !inputs.count(v.get());
    if (dead) by_name_.erase(v->name);
    return dead;
  });
  return removed;
}

// ---- value kinds

std::string type_str(const Value& v) {
  std::string dt(dtype_name(v.dtype));
  std::string tensor = dt + (v.shape ? sym_shape_str(*v.shape) : "[...]");
  switch (v.kind) {
    case ValueKind::tensor: return tensor;
    case ValueKind::sequence: return "seq<" + dt + ">";
    case ValueKind::optional_tensor: return "opt<" + tensor + ">";
    case ValueKind::optional_sequence: return "opt<seq<" + dt + ">>";
  }
  return tensor;
}

namespace {

// The kinds an op takes and makes, one letter per slot: T tensor, S sequence, O optional, X a
// tensor or sequence, A anything; a trailing '*' repeats the letter before it. Ops not listed
// take and make tensors only. Absent inputs are not checked.
struct KindRule {
  std::string_view op, ins, outs;
  bool value_op;  // runs only with a value kernel
};
constexpr KindRule kKindRules[] = {
    {"sequence_empty", "", "S", true},         {"sequence_construct", "T*", "S", true},
    {"sequence_insert", "STT", "S", true},     {"sequence_at", "ST", "T", true},
    {"sequence_erase", "ST", "S", true},       {"sequence_length", "S", "T", true},
    {"split_to_sequence", "TT", "S", true},    {"concat_from_sequence", "S", "T", true},
    {"sequence_map", "SA*", "S*", true},       {"optional_construct", "X", "O", true},
    {"optional_has_element", "A", "T", true},  {"optional_get_element", "A", "X", true},
    {"clone", "A", "A", false},                {"if_else", "A*", "A*", false},
    {"loop", "A*", "A*", false},
};

const KindRule* kind_rule(std::string_view op) {
  for (const KindRule& r : kKindRules)
    if (r.op == op) return &r;
  return nullptr;
}

// The letter for slot i of a rule's spec, or 0 past its end.
char slot_letter(std::string_view spec, size_t i) {
  if (!spec.empty() && spec.back() == '*') {
    if (i + 2 >= spec.size()) return spec[spec.size() - 2];
    return spec[i];
  }
  return i < spec.size() ? spec[i] : 0;
}

bool kind_fits(char letter, ValueKind k) {
  switch (letter) {
    case 'T': return k == ValueKind::tensor;
    case 'S': return k == ValueKind::sequence;
    case 'O': return k == ValueKind::optional_tensor || k == ValueKind::optional_sequence;
    case 'X': return k == ValueKind::tensor || k == ValueKind::sequence;
    case 'A': return true;
    default: return k == ValueKind::tensor;
  }
}

const char* letter_name(char letter) {
  switch (letter) {
    case 'S': return "a sequence";
    case 'O': return "an optional";
    case 'X': return "a tensor or sequence";
    default: return "a tensor";
  }
}

}  // namespace

bool is_value_op(std::string_view op) {
  const KindRule* r = kind_rule(op);
  return r && r->value_op;
}

bool runs_on_values(const Node& n) {
  if (is_value_op(n.op_name())) return true;
  for (const Value* in : n.inputs)
    if (in && !in->is_tensor()) return true;
  for (const Value* out : n.outputs)
    if (!out->is_tensor()) return true;
  return false;
}

// ---- text form and verifier

namespace {

void write_text(std::ostringstream& os, const Graph& g, const std::string& pad) {
  auto value_str = [](const Value* v) { return v ? "%" + v->name + ": " + type_str(*v) : std::string("<absent>"); };
  for (const Value* in : g.inputs()) os << pad << "input " << value_str(in) << "\n";
  for (const auto& v : g.values())
    if (v->is_constant()) os << pad << "const " << value_str(v.get()) << "\n";
  for (const auto& n : g.nodes()) {
    os << pad;
    for (size_t k = 0; k < n->outputs.size(); ++k) os << (k ? ", " : "") << value_str(n->outputs[k]);
    os << " = " << n->op_name() << "(";
    for (size_t i = 0; i < n->inputs.size(); ++i) os << (i ? ", " : "") << (n->inputs[i] ? "%" + n->inputs[i]->name : "<absent>");
    os << ")";
    if (!n->attrs.empty()) {
      os << " {";
      bool first = true;
      for (const auto& [k, a] : n->attrs) {
        os << (first ? "" : ", ") << k << "=" << attr_str(a);
        first = false;
      }
      os << "}";
    }
    os << "  # " << n->name << "\n";
    for (const auto& [key, sub] : n->subgraphs) {
      os << pad << "  " << key << ":\n";
      if (sub) write_text(os, *sub, pad + "    ");
    }
  }
  os << pad << "return";
  for (size_t i = 0; i < g.outputs().size(); ++i) os << (i ? ", %" : " %") << g.outputs()[i]->name;
  os << "\n";
}

}  // namespace

std::string to_text(const Graph& g) {
  std::ostringstream os;
  os << "graph (opset " << g.opset << ")\n";
  write_text(os, g, "  ");
  return os.str();
}

void verify(const Graph& g, std::string_view context) {
  auto fail = [&](auto&&... parts) {
    throw InternalError(detail::concat("graph verifier (after ", context, "): ", parts...));
  };
  std::set<const Value*> available;
  std::set<std::string> node_names;
  for (const Value* in : g.inputs()) available.insert(in);
  for (const auto& v : g.values())
    if (v->is_constant()) available.insert(v.get());
  for (const auto& n : g.nodes()) {
    if (!n->op) fail("node '", n->name, "' has no operator");
    if (!node_names.insert(n->name).second) fail("node name '", n->name, "' is used twice");
    for (const Value* in : n->inputs)
      if (in && !available.count(in))
        fail("node '", n->name, "' (", n->op_name(), ") reads %", in->name, " before it is produced");
    const KindRule* rule = kind_rule(n->op_name());
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      const Value* in = n->inputs[i];
      char want = rule ? slot_letter(rule->ins, i) : 'T';
      if (in && !kind_fits(want, in->kind))
        fail("node '", n->name, "' (", n->op_name(), ") input ", i, " must be ", letter_name(want), ", %", in->name,
             " is ", type_str(*in));
    }
    for (size_t k = 0; k < n->outputs.size(); ++k) {
      char want = rule ? slot_letter(rule->outs, k) : 'T';
      if (!kind_fits(want, n->outputs[k]->kind))
        fail("node '", n->name, "' (", n->op_name(), ") output ", k, " must be ", letter_name(want), ", %",
             n->outputs[k]->name, " is ", type_str(*n->outputs[k]));
    }
    for (size_t k = 0; k < n->outputs.size(); ++k) {
      const Value* out = n->outputs[k];
      if (out->producer != n.get() || out->producer_output != static_cast<int>(k))
        fail("output %", out->name, " of node '", n->name, "' does not point back at it");
      if (!available.insert(out).second) fail("value %", out->name, " is produced twice");
    }
    for (const auto& [key, sub] : n->subgraphs) {
      if (!sub) fail("node '", n->name, "' (", n->op_name(), ") has an empty subgraph '", key, "'");
      verify(*sub, detail::concat(context, "; in subgraph '", key, "' of node '", n->name, "'"));
    }
  }
  for (const Value* out : g.outputs())
    if (!available.count(out)) fail("graph output %", out->name, " is never produced");
}

}  // namespace kiln::graph
