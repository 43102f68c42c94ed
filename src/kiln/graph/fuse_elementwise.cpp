// Elementwise fusion: groups of f32 elementwise and broadcast ops (registry fusion kinds) that
// all produce one output shape become a single fused_elementwise node, whose program
// (fused_program.h) the interpreter in kernels_fused.cpp runs tile by tile: the intermediates of
// a group never reach memory. Groups grow in graph order; a node joins the groups of its
// producers unless that would create a cycle through a node outside the group.
#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <unordered_map>

#include "kiln/core/error.h"
#include "kiln/graph/fused_program.h"
#include "kiln/graph/pass_util.h"
#include "kiln/graph/passes.h"

namespace kiln::graph {

namespace {

using ops::FusionKind;

bool fully_known(const std::optional<SymShape>& s) {
  if (!s) return false;
  for (const Dim& d : *s)
    if (!d.is_fixed() && d.symbol.empty()) return false;
  return true;
}

// NumPy broadcasting of symbolic shapes; an unknown dim where the rule cannot decide.
SymShape broadcast(const SymShape& a, const SymShape& b) {
  size_t r = std::max(a.size(), b.size());
  SymShape out(r);
  for (size_t i = 0; i < r; ++i) {
    Dim x = i < r - a.size() ? Dim::fixed(1) : a[i - (r - a.size())];
    Dim y = i < r - b.size() ? Dim::fixed(1) : b[i - (r - b.size())];
    if (x == Dim::fixed(1)) out[i] = y;
    else if (y == Dim::fixed(1) || x == y) out[i] = x;
    else if (x.is_fixed()) out[i] = x;  // y must be 1 or equal: a fixed size > 1 decides
    else if (y.is_fixed()) out[i] = y;
    else out[i] = Dim{};
  }
  return out;
}

std::optional<SymShape> shape_of_value(const Value* v) {
  if (!v) return std::nullopt;
  if (v->is_constant()) return fixed_shape(v->constant.shape());
  return v->shape;
}

// ---- what a node becomes inside a program

struct Member {
  const fused::OpSpec* spec = nullptr;
  std::vector<Value*> operands;  // value operands
  std::vector<float> immediates;
};

bool is_scalar_f32_const(const Value* v) {
  return v && v->is_constant() && v->constant.dtype() == DType::f32 && v->constant.numel() == 1;
}

std::optional<Member> describe(const Node& n) {
  FusionKind kind = n.op->fusion;
  if (kind != FusionKind::elementwise && kind != FusionKind::broadcast) return std::nullopt;
  if (n.outputs.size() != 1 || n.outputs[0]->dtype != DType::f32 || !fully_known(n.outputs[0]->shape))
    return std::nullopt;
  std::string_view op = n.op_name();
  Member m;
  auto attr = [&](std::string_view key, double fallback) { return static_cast<float>(n.attr_float(key, fallback)); };
  if (op == "gelu") {
    m.spec = fused::find_spec(n.attr_string("approximate", "none") == "tanh" ? "gelu_tanh" : "gelu");
  } else if (op == "clamp") {
    // Bounds: one-element constant inputs, else attributes, else none (+-inf).
    float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
    bool any = false;
    for (size_t i = 1; i <= 2; ++i) {
      const Value* b = n.input(i);
      std::optional<double> v;
      if (b) {
        v = pass::scalar_const(b);
        if (!v) return std::nullopt;
      } else if (n.has_attr(i == 1 ? "min" : "max")) {
        v = n.attr_float(i == 1 ? "min" : "max");
      }
      if (v) (i == 1 ? lo : hi) = static_cast<float>(*v), any = true;
    }
    if (!any || lo > hi) return std::nullopt;
    m.spec = fused::find_spec("clamp");
    m.immediates = {lo, hi};
  } else if (op == "leaky_relu") {
    m.spec = fused::find_spec(op);
    m.immediates = {attr("alpha", 0.01)};
  } else if (op == "elu") {
    m.spec = fused::find_spec(op);
    m.immediates = {attr("alpha", 1.0)};
  } else if (op == "hard_sigmoid") {
    m.spec = fused::find_spec(op);
    m.immediates = {attr("alpha", 0.2), attr("beta", 0.5)};
  } else if (op == "selu") {
    m.spec = fused::find_spec(op);
    m.immediates = {attr("alpha", 1.67326319217681884765625), attr("gamma", 1.05070102214813232421875)};
  } else {
    m.spec = fused::find_spec(op);
    if (m.spec && m.spec->immediates != 0) return std::nullopt;
  }
  if (!m.spec) return std::nullopt;
  if (op != "clamp" && n.inputs.size() != static_cast<size_t>(m.spec->operands)) return std::nullopt;
  for (int i = 0; i < m.spec->operands; ++i) {
    Value* v = n.input(static_cast<size_t>(i));
    if (!v || v->dtype != DType::f32 || !shape_of_value(v)) return std::nullopt;
    m.operands.push_back(v);
  }
  return m;
}

// ---- grouping

struct Grouping {
  std::unordered_map<const Node*, size_t> pos;
  std::unordered_map<const Node*, int> group_of;
  std::vector<std::vector<Node*>> groups;  // emptied when merged away

  // Whether some node outside `members` lies on a path between two members.
  bool has_outside_path(const std::set<const Node*>& members) const {
    size_t lo = std::numeric_limits<size_t>::max();
    for (const Node* n : members) lo = std::min(lo, pos.at(n));
    std::set<const Node*> seen;
    std::vector<const Node*> stack;
    for (const Node* n : members)
      for (const Value* in : n->inputs)
        if (in && in->producer && !members.count(in->producer)) stack.push_back(in->producer);
    while (!stack.empty()) {
      const Node* p = stack.back();
      stack.pop_back();
      if (pos.at(p) < lo || !seen.insert(p).second) continue;
      if (members.count(p)) return true;
      for (const Value* in : p->inputs)
        if (in && in->producer) stack.push_back(in->producer);
    }
    return false;
  }
};

std::string operand_text(Value* v, const std::unordered_map<const Value*, int>& temps,
                         std::vector<Value*>& inputs) {
  if (auto it = temps.find(v); it != temps.end()) return detail::concat("t", it->second);
  if (is_scalar_f32_const(v)) return fused::immediate(static_cast<float>(v->constant.item()));
  auto at = std::find(inputs.begin(), inputs.end(), v);
  if (at == inputs.end()) {
    inputs.push_back(v);
    at = inputs.end() - 1;
  }
  return detail::concat("in", at - inputs.begin());
}

// Replaces one group (>= 2 nodes, in graph order) by a fused_elementwise node.
void build_fused(Graph& g, const std::vector<Node*>& members, const pass::UseIndex& uses) {
  std::set<const Node*> in_group(members.begin(), members.end());
  std::unordered_map<const Value*, int> temps;
  std::vector<Value*> inputs;
  std::vector<std::string> program, out_names;
  std::vector<Value*> outs;
  for (Node* n : members) {
    Member m = *describe(*n);
    std::string line = detail::concat("t", temps.size(), " = ", m.spec->name);
    for (Value* v : m.operands) (line += ' ') += operand_text(v, temps, inputs);
    for (float f : m.immediates) (line += ' ') += fused::immediate(f);
    program.push_back(std::move(line));
    temps[n->outputs[0]] = static_cast<int>(temps.size());
  }
  for (Node* n : members) {
    Value* v = n->outputs[0];
    int inside = 0;
    for (const Node* u : uses.users(v))
      if (in_group.count(u))
        for (const Value* in : u->inputs) inside += in == v ? 1 : 0;
    if (uses.count(v) > inside) {
      outs.push_back(v);
      out_names.push_back(detail::concat("t", temps.at(v)));
    }
  }
  const auto rank = static_cast<int64_t>(members.back()->outputs[0]->shape->size());
  for (Node* n : members) pass::detach(n);
  pass::insert_before(g, members.back(), "fused_elementwise", inputs, outs,
                      {{"program", program}, {"outputs", out_names}, {"rank", rank}});
}

}  // namespace

int infer_elementwise_shapes(Graph& g) {
  int filled = 0;
  for (const auto& n : g.nodes()) {
    FusionKind kind = n->op->fusion;
    if (kind != FusionKind::elementwise && kind != FusionKind::broadcast) continue;
    std::string_view op = n->op_name();
    if (op == "quantize_linear" || op == "dequantize_linear" || op == "fused_elementwise" || op == "expand") continue;
    if (n->outputs.size() != 1 || n->outputs[0]->shape) continue;
    std::optional<SymShape> s = SymShape{};
    size_t count = op == "clamp" ? 1 : n->inputs.size();  // clamp's bounds are scalars
    for (size_t i = 0; i < count && s; ++i) {
      auto in = shape_of_value(n->input(i));
      s = in ? std::optional<SymShape>(broadcast(*s, *in)) : std::nullopt;
    }
    if (!s) continue;
    n->outputs[0]->shape = std::move(s);
    ++filled;
  }
  return filled;
}

int fuse_elementwise(Graph& g) {
  infer_elementwise_shapes(g);
  Grouping gr;
  for (size_t i = 0; i < g.nodes().size(); ++i) gr.pos[g.nodes()[i].get()] = i;
  for (const auto& np : g.nodes()) {
    Node* n = np.get();
    if (!describe(*n)) continue;
    const SymShape& shape = *n->outputs[0]->shape;
    std::vector<int> candidates;
    for (Value* v : n->inputs) {
      if (!v || !v->producer) continue;
      auto it = gr.group_of.find(v->producer);
      if (it == gr.group_of.end() || *gr.groups[static_cast<size_t>(it->second)].front()->outputs[0]->shape != shape)
        continue;
      if (std::find(candidates.begin(), candidates.end(), it->second) == candidates.end())
        candidates.push_back(it->second);
    }
    auto try_merge = [&](const std::vector<int>& ids) {
      std::set<const Node*> members{n};
      for (int id : ids)
        for (Node* m : gr.groups[static_cast<size_t>(id)]) members.insert(m);
      if (gr.has_outside_path(members)) return false;
      int keep = ids.front();
      auto& kept = gr.groups[static_cast<size_t>(keep)];
      for (size_t k = 1; k < ids.size(); ++k) {
        auto& other = gr.groups[static_cast<size_t>(ids[k])];
        for (Node* m : other) gr.group_of[m] = keep;
        kept.insert(kept.end(), other.begin(), other.end());
        other.clear();
      }
      kept.push_back(n);
      gr.group_of[n] = keep;
      return true;
    };
    bool merged = !candidates.empty() && try_merge(candidates);
    for (size_t k = 0; !merged && candidates.size() > 1 && k < candidates.size(); ++k) merged = try_merge({candidates[k]});
    if (!merged) {
      gr.group_of[n] = static_cast<int>(gr.groups.size());
      gr.groups.push_back({n});
    }
  }
  pass::UseIndex uses(g);
  int fused = 0;
  for (auto& members : gr.groups) {
    if (members.size() < 2) continue;
    std::sort(members.begin(), members.end(), [&](const Node* a, const Node* b) { return gr.pos[a] < gr.pos[b]; });
    build_fused(g, members, uses);
    fused += static_cast<int>(members.size());
  }
  if (fused) {
    g.remove_unused();
    pass::topo_sort(g);
  }
  return fused;
}

}  // namespace kiln::graph
