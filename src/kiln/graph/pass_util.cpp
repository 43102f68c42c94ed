#include "kiln/graph/pass_util.h"

#include <algorithm>
#include <functional>
#include <queue>

#include "kiln/core/error.h"

namespace kiln::graph::pass {

UseIndex::UseIndex(const Graph& g) {
  for (const auto& n : g.nodes()) {
    for (const Value* in : n->inputs) {
      if (!in) continue;
      ++counts_[in];
      auto& u = users_[in];
      if (u.empty() || u.back() != n.get()) u.push_back(n.get());
    }
  }
  for (const Value* out : g.outputs()) {
    ++counts_[out];
    outputs_[out] = true;
  }
}

int UseIndex::count(const Value* v) const {
  auto it = counts_.find(v);
  return it == counts_.end() ? 0 : it->second;
}

const std::vector<Node*>& UseIndex::users(const Value* v) const {
  auto it = users_.find(v);
  return it == users_.end() ? none_ : it->second;
}

bool UseIndex::is_output(const Value* v) const { return outputs_.count(v) > 0; }

Node* UseIndex::sole_user(const Value* v) const {
  if (count(v) != 1 || is_output(v)) return nullptr;
  return users(v).front();
}

Node* producer_of(const Value* v, std::string_view op) {
  return v && v->producer && v->producer->op_name() == op ? v->producer : nullptr;
}

const Tensor* const_of(const Value* v) { return v && v->is_constant() ? &v->constant : nullptr; }

std::optional<double> scalar_const(const Value* v) {
  const Tensor* t = const_of(v);
  if (!t || t->numel() != 1 || t->dtype() == DType::b8) return std::nullopt;
  return t->item();
}

bool const_all_equal(const Value* v, double x) {
  const Tensor* t = const_of(v);
  if (!t || t->dtype() == DType::b8 || t->numel() == 0) return false;
  for (double e : t->to_vector<double>())
    if (e != x) return false;
  return true;
}

std::optional<Shape> concrete(const Value* v) {
  if (!v) return std::nullopt;
  if (v->is_constant()) return v->constant.shape();
  if (!v->shape) return std::nullopt;
  return concrete_shape(*v->shape);
}

int64_t rank_of(const Value* v) {
  if (!v) return -1;
  if (v->is_constant()) return v->constant.dim();
  return v->shape ? static_cast<int64_t>(v->shape->size()) : -1;
}

std::optional<std::vector<int64_t>> const_ints(const Node& n, size_t i, std::string_view key) {
  if (Value* v = n.input(i)) {
    const Tensor* t = const_of(v);
    if (!t || !is_integral(t->dtype()) || t->dim() > 1) return std::nullopt;
    return t->to_vector<int64_t>();
  }
  if (!n.has_attr(key)) return std::nullopt;
  const Attr& a = n.attrs.find(key)->second;
  if (const auto* v = std::get_if<std::vector<int64_t>>(&a)) return *v;
  return std::nullopt;
}

void rewrite(Node* n, std::string_view op, std::vector<Value*> inputs, std::map<std::string, Attr, std::less<>> attrs) {
  const ops::OpInfo* info = ops::find_op(op);
  KILN_ASSERT(info, "pass rewrote a node into unknown op ", op);
  n->op = info;
  n->inputs = std::move(inputs);
  n->attrs = std::move(attrs);
}

void detach(Node* n) {
  for (Value* out : n->outputs)
    if (out->producer == n) out->producer = nullptr;
  n->outputs.clear();
}

Node* insert_before(Graph& g, const Node* anchor, std::string_view op, std::vector<Value*> inputs,
                    std::vector<Value*> outputs, std::map<std::string, Attr, std::less<>> attrs) {
  Node* n = g.add_node(op, std::move(inputs), std::move(outputs), std::move(attrs));
  if (!anchor) return n;
  auto& nodes = g.mutable_nodes();
  auto at = std::find_if(nodes.begin(), nodes.end(), [&](const auto& p) { return p.get() == anchor; });
  KILN_ASSERT(at != nodes.end(), "insert_before: anchor is not in the graph");
  std::rotate(at, nodes.end() - 1, nodes.end());
  return n;
}

namespace {

bool is_graph_output(const Graph& g, const Value* v) {
  return std::find(g.outputs().begin(), g.outputs().end(), v) != g.outputs().end();
}

// Gives `from`'s producer a fresh stand-in output so `from` can be produced elsewhere.
void release_output(Graph& g, Value* from) {
  Node* q = from->producer;
  if (!q) return;
  Value* d = g.add_value({}, from->dtype, from->shape);
  q->outputs[static_cast<size_t>(from->producer_output)] = d;
  d->producer = q;
  d->producer_output = from->producer_output;
  from->producer = nullptr;
}

}  // namespace

bool substitute(Graph& g, Value* from, Value* to, bool allow_copy) {
  if (from == to) return true;
  if (!is_graph_output(g, from)) {
    g.replace_uses(from, to);
    return true;
  }
  Node* p = to->producer;
  if (p && !to->is_constant() && !is_graph_output(g, to)) {
    // Rename: p produces `from` (name and all) in place of `to`.
    Node* q = from->producer;
    if (q) release_output(g, from);
    g.replace_uses(to, from);
    size_t slot = static_cast<size_t>(to->producer_output);
    p->outputs[slot] = from;
    from->producer = p;
    from->producer_output = static_cast<int>(slot);
    to->producer = nullptr;
    from->dtype = to->dtype;
    if (to->shape) from->shape = to->shape;
    return true;
  }
  Node* q = from->producer;
  if (!allow_copy || !q) return false;
  for (auto& n : g.mutable_nodes())
    for (Value*& in : n->inputs)
      if (in == from) in = to;
  release_output(g, from);
  insert_before(g, q, "clone", {to}, {from});
  return true;
}

void topo_sort(Graph& g) {
  auto& nodes = g.mutable_nodes();
  const size_t n = nodes.size();
  std::unordered_map<const Node*, size_t> index;
  for (size_t i = 0; i < n; ++i) index[nodes[i].get()] = i;
  std::vector<int> pending(n, 0);
  std::vector<std::vector<size_t>> consumers(n);
  for (size_t i = 0; i < n; ++i)
    for (const Value* in : nodes[i]->inputs)
      if (in && in->producer) {
        auto it = index.find(in->producer);
        KILN_ASSERT(it != index.end(), "topo_sort: node '", nodes[i]->name, "' reads a value of a removed node");
        ++pending[i];
        consumers[it->second].push_back(i);
      }
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (size_t i = 0; i < n; ++i)
    if (pending[i] == 0) ready.push(i);
  std::vector<size_t> order;
  order.reserve(n);
  while (!ready.empty()) {
    size_t i = ready.top();
    ready.pop();
    order.push_back(i);
    for (size_t c : consumers[i])
      if (--pending[c] == 0) ready.push(c);
  }
  KILN_ASSERT(order.size() == n, "topo_sort: the graph has a cycle");
  std::vector<std::unique_ptr<Node>> sorted;
  sorted.reserve(n);
  for (size_t i : order) sorted.push_back(std::move(nodes[i]));
  nodes = std::move(sorted);
}

}  // namespace kiln::graph::pass
