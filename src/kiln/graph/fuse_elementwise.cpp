// Elementwise fusion: groups of f32 elementwise and broadcast ops (registry fusion kinds) that
// all produce one output shape become a single fused_elementwise node, whose program
// (fused_program.h) the interpreter in kernels_fused.cpp runs tile by tile: the intermediates of
// a group never reach memory. Groups grow in graph order; a node joins the groups of its
// producers unless that would create a cycle through a node outside the group. Then a reduction
// over trailing axes absorbs the group producing its input and the group consuming its result
// (a reduction program, run row by row by kernels_fused_reduce.cpp).
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

// ---- reductions with fused producers (TVM's pattern): an elementwise group whose only
// result feeds a reduction over trailing axes, the reduction, and an elementwise group on the
// reduced value that reads nothing else (immediates aside) become one fused_elementwise node
// running a reduction program (fused_program.h).

struct ReductionInfo {
  const fused::OpSpec* spec = nullptr;  // reduce_<op>
  int64_t axes = 0;                     // trailing dims reduced
  bool keepdims = true;
};

std::optional<ReductionInfo> describe_reduction(const Node& n) {
  static constexpr std::pair<std::string_view, std::string_view> kReduce[] = {
      {"sum", "reduce_sum"}, {"mean", "reduce_mean"}, {"amax", "reduce_max"}, {"min", "reduce_min"},
      {"prod", "reduce_prod"}};
  ReductionInfo r;
  for (const auto& [op, name] : kReduce)
    if (n.op_name() == op) r.spec = fused::find_spec(name);
  if (!r.spec || n.outputs.size() != 1 || n.outputs[0]->dtype != DType::f32 || n.inputs.size() > 2) return std::nullopt;
  const Value* x = n.input(0);
  if (!x || x->dtype != DType::f32 || x->is_constant() || !fully_known(x->shape)) return std::nullopt;
  const auto rank = static_cast<int64_t>(x->shape->size());
  if (rank == 0) return std::nullopt;  // the graph kernel copies a 0-d input
  std::vector<int64_t> axes;
  if (n.input(1) || n.has_attr("axes")) {
    auto a = pass::const_ints(n, 1, "axes");
    if (!a) return std::nullopt;  // axes computed at run time
    axes = *a;
  }
  if (axes.empty()) {
    if (n.attr_int("noop_with_empty_axes", 0) != 0) return std::nullopt;
    for (int64_t d = 0; d < rank; ++d) axes.push_back(d);
  }
  std::vector<bool> reduced(static_cast<size_t>(rank), false);
  for (int64_t a : axes) {
    int64_t d = a < 0 ? a + rank : a;
    if (d < 0 || d >= rank || reduced[static_cast<size_t>(d)]) return std::nullopt;
    reduced[static_cast<size_t>(d)] = true;
  }
  r.axes = static_cast<int64_t>(axes.size());
  for (int64_t d = rank - r.axes; d < rank; ++d)
    if (!reduced[static_cast<size_t>(d)]) return std::nullopt;  // not the trailing axes
  r.keepdims = n.attr_int("keepdims", 1) != 0;
  return r;
}

// One reduction fusion: producer group (or none), the reduction, epilogue group (or none).
struct ReductionFusion {
  std::vector<Node*> producer, epilogue;
  Node* reduce = nullptr;
  ReductionInfo info;

  std::vector<Node*> members() const {
    std::vector<Node*> all = producer;
    all.push_back(reduce);
    all.insert(all.end(), epilogue.begin(), epilogue.end());
    return all;
  }
};

// Whether collapsing every unit (a node set that becomes one node) keeps the graph acyclic:
// Kahn's algorithm on the quotient graph.
bool acyclic_after_collapse(const Graph& g, const std::vector<std::vector<Node*>>& units) {
  std::unordered_map<const Node*, size_t> id;
  size_t next = 0;
  for (const auto& u : units) {
    for (const Node* n : u) id[n] = next;
    ++next;
  }
  for (const auto& n : g.nodes())
    if (!id.count(n.get())) id[n.get()] = next++;
  std::vector<std::set<size_t>> succ(next);
  std::vector<int> pending(next, 0);
  for (const auto& n : g.nodes())
    for (const Value* in : n->inputs)
      if (in && in->producer && id.count(in->producer)) {
        size_t a = id.at(in->producer), b = id.at(n.get());
        if (a != b && succ[a].insert(b).second) ++pending[b];
      }
  std::vector<size_t> ready;
  for (size_t i = 0; i < next; ++i)
    if (pending[i] == 0) ready.push_back(i);
  size_t done = 0;
  while (!ready.empty()) {
    size_t i = ready.back();
    ready.pop_back();
    ++done;
    for (size_t j : succ[i])
      if (--pending[j] == 0) ready.push_back(j);
  }
  return done == next;
}

// Replaces a reduction fusion by one fused_elementwise node with a reduction program.
void build_reduction(Graph& g, const ReductionFusion& f, const pass::UseIndex& uses) {
  std::unordered_map<const Value*, int> temps;
  std::vector<Value*> inputs;
  std::vector<std::string> program, out_names;
  std::vector<Value*> outs;
  auto add_members = [&](const std::vector<Node*>& nodes) {
    for (Node* n : nodes) {
      Member m = *describe(*n);
      std::string line = detail::concat("t", temps.size(), " = ", m.spec->name);
      for (Value* v : m.operands) (line += ' ') += operand_text(v, temps, inputs);
      for (float v : m.immediates) (line += ' ') += fused::immediate(v);
      program.push_back(std::move(line));
      temps[n->outputs[0]] = static_cast<int>(temps.size());
    }
  };
  add_members(f.producer);
  Value* x = f.reduce->input(0);
  Value* r = f.reduce->outputs[0];
  program.push_back(detail::concat("t", temps.size(), " = ", f.info.spec->name, " ", operand_text(x, temps, inputs)));
  temps[r] = static_cast<int>(temps.size());
  add_members(f.epilogue);
  // Outputs: the row values read outside the epilogue (or graph outputs).
  std::set<const Node*> in_epilogue(f.epilogue.begin(), f.epilogue.end());
  std::vector<Value*> row_values = {r};
  for (Node* n : f.epilogue) row_values.push_back(n->outputs[0]);
  for (Value* v : row_values) {
    int inside = 0;
    for (const Node* u : uses.users(v))
      if (in_epilogue.count(u))
        for (const Value* in : u->inputs) inside += in == v ? 1 : 0;
    if (uses.count(v) > inside) {
      outs.push_back(v);
      out_names.push_back(detail::concat("t", temps.at(v)));
    }
  }
  const auto rank = static_cast<int64_t>(x->shape->size());
  const Node* anchor = f.epilogue.empty() ? f.reduce : f.epilogue.back();
  std::vector<Node*> all = f.members();
  for (Node* n : all) pass::detach(n);
  pass::insert_before(g, anchor, "fused_elementwise", inputs, outs,
                      {{"program", program},
                       {"outputs", out_names},
                       {"rank", rank},
                       {"reduce_axes", f.info.axes},
                       {"keepdims", int64_t{f.info.keepdims ? 1 : 0}}});
}

// The reduction fusions of a graph whose elementwise groups are `gr`; absorbed groups are
// emptied from gr.groups. Members of every group are in graph order.
std::vector<ReductionFusion> plan_reductions(const Graph& g, Grouping& gr, const pass::UseIndex& uses) {
  std::vector<ReductionFusion> plans;
  std::vector<std::vector<Node*>> units;  // what becomes one node: fusions so far, then groups
  auto group_of = [&](const Node* n) -> int {
    auto it = gr.group_of.find(n);
    return it == gr.group_of.end() ? -1 : it->second;
  };
  // A group's values read outside it (or graph outputs).
  auto external_outputs = [&](const std::vector<Node*>& members) {
    std::set<const Node*> in(members.begin(), members.end());
    std::vector<Value*> out;
    for (Node* n : members) {
      Value* v = n->outputs[0];
      int inside = 0;
      for (const Node* u : uses.users(v))
        if (in.count(u))
          for (const Value* i : u->inputs) inside += i == v ? 1 : 0;
      if (uses.count(v) > inside) out.push_back(v);
    }
    return out;
  };
  for (const auto& np : g.nodes()) {
    Node* n = np.get();
    auto info = describe_reduction(*n);
    if (!info) continue;
    ReductionFusion f;
    f.reduce = n;
    f.info = *info;
    Value* x = n->input(0);
    int pg = x->producer ? group_of(x->producer) : -1;
    if (pg >= 0 && uses.sole_user(x) == n) {
      const auto& members = gr.groups[static_cast<size_t>(pg)];
      auto outs = external_outputs(members);
      if (outs.size() == 1 && outs[0] == x) f.producer = members;
    }
    Value* r = n->outputs[0];
    for (const Node* u : uses.users(r)) {
      int eg = group_of(u);
      if (eg < 0 || !r->shape) continue;
      const auto& members = gr.groups[static_cast<size_t>(eg)];
      if (members.empty() || *members.front()->outputs[0]->shape != *r->shape) continue;
      std::set<const Value*> inside;
      for (Node* m : members) inside.insert(m->outputs[0]);
      bool reads_only_r = true;
      for (Node* m : members) {
        const Member d = *describe(*m);
        for (Value* v : d.operands) reads_only_r = reads_only_r && (v == r || inside.count(v) || is_scalar_f32_const(v));
      }
      if (reads_only_r) f.epilogue = members;
      break;
    }
    if (f.producer.empty() && f.epilogue.empty()) continue;
    // Collapsing must not close a cycle through other fused nodes.
    std::vector<std::vector<Node*>> candidate = units;
    candidate.push_back(f.members());
    std::set<int> absorbed;
    if (!f.producer.empty()) absorbed.insert(pg);
    if (!f.epilogue.empty()) absorbed.insert(group_of(f.epilogue.front()));
    for (size_t i = 0; i < gr.groups.size(); ++i)
      if (gr.groups[i].size() > 1 && !absorbed.count(static_cast<int>(i))) candidate.push_back(gr.groups[i]);
    if (!acyclic_after_collapse(g, candidate)) continue;
    units.push_back(f.members());
    for (int id : absorbed) gr.groups[static_cast<size_t>(id)].clear();
    plans.push_back(std::move(f));
  }
  return plans;
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
  for (auto& members : gr.groups)
    std::sort(members.begin(), members.end(), [&](const Node* a, const Node* b) { return gr.pos[a] < gr.pos[b]; });
  int fused = 0;
  for (const ReductionFusion& f : plan_reductions(g, gr, uses)) {
    fused += static_cast<int>(f.members().size());
    build_reduction(g, f, uses);
  }
  for (auto& members : gr.groups) {
    if (members.size() < 2) continue;
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
