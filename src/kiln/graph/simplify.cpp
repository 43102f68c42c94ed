// Simplification: dead-code elimination, common-subexpression elimination, and rewrite rules
// that remove no-ops or merge two data-movement ops into one. Each rule is one `if` below, with
// the identity it applies written beside it.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <set>
#include <unordered_map>

#include "kiln/graph/pass_util.h"
#include "kiln/graph/passes.h"

namespace kiln::graph {

namespace {

using pass::const_of;
using pass::producer_of;

// ---- CSE keys: exact encodings, so 0.1 and 0.10000001 never collide.

void put_bytes(std::string& key, const void* p, size_t n) { key.append(static_cast<const char*>(p), n); }

void put_tensor(std::string& key, const Tensor& t) {
  key += dtype_name(t.dtype());
  for (int64_t d : t.shape()) put_bytes(key, &d, sizeof d);
  Tensor c = contiguous_raw(t);
  put_bytes(key, c.raw_data(), static_cast<size_t>(c.numel()) * element_size(c.dtype()));
}

void put_attr(std::string& key, const Attr& a) {
  key += static_cast<char>('0' + a.index());
  std::visit(
      [&](const auto& v) {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, int64_t> || std::is_same_v<V, double>) put_bytes(key, &v, sizeof v);
        else if constexpr (std::is_same_v<V, std::string>) key += v + '\0';
        else if constexpr (std::is_same_v<V, Tensor>) put_tensor(key, v);
        else if constexpr (std::is_same_v<V, std::vector<std::string>>)
          for (const auto& s : v) key += s + '\0';
        else
          for (const auto& e : v) put_bytes(key, &e, sizeof e);
      },
      a);
  key += '\x1f';
}

std::string node_key(const Node& n) {
  std::string key(n.op_name());
  key += '|';
  for (const Value* in : n.inputs) {
    int64_t id = in ? in->id : -1;
    put_bytes(key, &id, sizeof id);
  }
  key += '|';
  key += std::to_string(n.outputs.size());
  key += '|';
  for (const auto& [name, a] : n.attrs) {
    key += name + '=';
    put_attr(key, a);
  }
  // Bodies compare by identity: two control-flow nodes are one only when they share them.
  for (const auto& [name, sub] : n.subgraphs) {
    key += name + '@';
    const Graph* p = sub.get();
    put_bytes(key, &p, sizeof p);
  }
  return key;
}

bool is_output(const Graph& g, const Value* v) {
  return std::find(g.outputs().begin(), g.outputs().end(), v) != g.outputs().end();
}

// ---- identities

// x op c keeps x's shape and dtype: c broadcasts into x without adding dims or promoting.
bool keeps_shape_and_dtype(const Value* x, const Tensor& c, const Value* out) {
  if (promote_types(x->dtype, c.dtype()) != x->dtype || out->dtype != x->dtype) return false;
  // Half-precision arithmetic computes (and returns) f32.
  if (x->dtype == DType::f16 || x->dtype == DType::bf16) return false;
  if (c.dim() == 0) return true;
  int64_t r = pass::rank_of(x);
  if (r < c.dim()) return false;
  for (int64_t i = 0; i < c.dim(); ++i) {
    int64_t cd = c.shape()[static_cast<size_t>(c.dim() - 1 - i)];
    if (cd == 1) continue;
    const Dim& xd = (*x->shape)[static_cast<size_t>(r - 1 - i)];
    if (!xd.is_fixed() || xd.size != cd) return false;
  }
  return true;
}

// The operand of a binary node that is not the constant `neutral`, when the other one is.
Value* neutral_operand(const Node& n, double neutral, bool either_side) {
  Value* a = n.input(0);
  Value* b = n.input(1);
  if (!a || !b || n.outputs.size() != 1) return nullptr;
  if (pass::const_all_equal(b, neutral) && keeps_shape_and_dtype(a, b->constant, n.outputs[0])) return a;
  if (either_side && pass::const_all_equal(a, neutral) && keeps_shape_and_dtype(b, a->constant, n.outputs[0]))
    return b;
  return nullptr;
}

std::optional<std::vector<int64_t>> perm_of(const Node& n) {
  if (n.has_attr("perm")) return n.attr_ints("perm");
  int64_t r = pass::rank_of(n.input(0));
  if (r < 0) return std::nullopt;
  std::vector<int64_t> p(static_cast<size_t>(r));
  std::iota(p.rbegin(), p.rend(), 0);
  return p;
}

bool is_identity_perm(const std::vector<int64_t>& p) {
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] != static_cast<int64_t>(i)) return false;
  return true;
}

// Axes normalised against rank (nullopt when a negative axis meets an unknown rank).
std::optional<std::set<int64_t>> norm_axes(const std::vector<int64_t>& axes, int64_t rank) {
  std::set<int64_t> out;
  for (int64_t a : axes) {
    if (a < 0 && rank < 0) return std::nullopt;
    out.insert(a < 0 ? a + rank : a);
  }
  return out;
}

// The node's output is its input 0: which no-op rules apply.
Value* no_op_source(const Node& n, const std::vector<int>& uses) {
  std::string_view op = n.op_name();
  Value* x = n.input(0);
  if (!x || n.outputs.empty()) return nullptr;
  if (op == "clone" || op == "contiguous") return x;                              // clone(x) -> x
  if (op == "dropout") {                                                          // dropout(x) -> x
    for (size_t k = 1; k < n.outputs.size(); ++k)
      if (uses[static_cast<size_t>(n.outputs[k]->id)] > 0) return nullptr;  // the mask is read
    return x;
  }
  if (op == "to" && n.has_attr("dtype") && dtype_from_name(n.attr_string("dtype")) == x->dtype) return x;
  if (op == "add") return neutral_operand(n, 0.0, true);                          // x + 0 -> x
  if (op == "sub") return neutral_operand(n, 0.0, false);                         // x - 0 -> x
  if (op == "mul") return neutral_operand(n, 1.0, true);                          // x * 1 -> x
  if (op == "div" && is_floating(x->dtype)) return neutral_operand(n, 1.0, false);  // x / 1 -> x
  if (op == "permute") {                                                          // permute(x, id) -> x
    auto p = perm_of(n);
    return p && is_identity_perm(*p) ? x : nullptr;
  }
  if (op == "squeeze" || op == "unsqueeze") {
    // squeeze(unsqueeze(x, a), a) -> x and unsqueeze(squeeze(x, a), a) -> x
    Node* inner = producer_of(x, op == "squeeze" ? "unsqueeze" : "squeeze");
    if (!inner || !inner->input(0)) return nullptr;
    auto outer_axes = pass::const_ints(n, 1, "axes");
    auto inner_axes = pass::const_ints(*inner, 1, "axes");
    if (!outer_axes || !inner_axes || outer_axes->empty()) return nullptr;
    Value* src = inner->input(0);
    int64_t r = pass::rank_of(src);
    // unsqueeze's axes index its output, squeeze's its input: both are the larger rank.
    int64_t big = r < 0 ? -1 : (op == "squeeze" ? r + static_cast<int64_t>(inner_axes->size()) : r);
    auto a = norm_axes(*outer_axes, big), b = norm_axes(*inner_axes, big);
    return a && b && *a == *b && a->size() == outer_axes->size() ? src : nullptr;
  }
  if (op == "flatten") {                                                          // flatten of one dim -> x
    int64_t r = pass::rank_of(x);
    int64_t a = n.attr_int("start_dim", 0), b = n.attr_int("end_dim", -1);
    if ((a < 0 || b < 0) && r < 0) return nullptr;
    if (r >= 0) a = a < 0 ? a + r : a, b = b < 0 ? b + r : b;
    return a == b ? x : nullptr;
  }
  if (op == "expand") {                                                           // expand to x's shape -> x
    auto s = pass::concrete(x);
    auto target = pass::const_ints(n, 1, "shape");
    if (!s || !target || target->size() > s->size()) return nullptr;
    for (size_t i = 0; i < target->size(); ++i) {
      int64_t t = (*target)[target->size() - 1 - i];
      if (t != 1 && t != (*s)[s->size() - 1 - i]) return nullptr;
    }
    return n.outputs[0]->dtype == x->dtype ? x : nullptr;
  }
  if (op == "reshape") {                                                          // reshape to x's shape -> x
    auto s = pass::concrete(x);
    auto spec = pass::const_ints(n, 1, "shape");
    if (!s || !spec || spec->size() != s->size()) return nullptr;
    bool allowzero = n.attr_int("allowzero", 0) != 0;
    for (size_t i = 0; i < spec->size(); ++i) {
      int64_t d = (*spec)[i];
      if (d == 0 && !allowzero) continue;  // copies the input dim
      if (d != (*s)[i] && !(d == -1 && std::count(spec->begin(), spec->end(), -1) == 1)) return nullptr;
    }
    return x;
  }
  return nullptr;
}

// Two data-movement ops -> one. Returns true when n was rewritten.
bool merge_with_producer(Node& n) {
  std::string_view op = n.op_name();
  Value* x = n.input(0);
  if (op == "permute") {  // permute(permute(x, p1), p2) -> permute(x, p1[p2])
    Node* inner = producer_of(x, "permute");
    if (!inner || !inner->input(0)) return false;
    auto p1 = perm_of(*inner), p2 = perm_of(n);
    if (!p1 || !p2 || p1->size() != p2->size()) return false;
    std::vector<int64_t> q;
    for (int64_t i : *p2) q.push_back((*p1)[static_cast<size_t>(i)]);
    pass::rewrite(&n, "permute", {inner->input(0)}, {{"perm", q}});
    return true;
  }
  if (op == "reshape") {  // reshape(reshape(x, s1), s2) -> reshape(x, s2) when s2 has no copied (0) dims
    Node* inner = producer_of(x, "reshape");
    if (!inner || !inner->input(0)) return false;
    auto spec = pass::const_ints(n, 1, "shape");
    bool allowzero = n.attr_int("allowzero", 0) != 0;
    if (!spec || (!allowzero && std::count(spec->begin(), spec->end(), 0) > 0)) return false;
    n.inputs[0] = inner->input(0);
    return true;
  }
  return false;
}

}  // namespace

int eliminate_dead_code(Graph& g) { return static_cast<int>(g.remove_unused()); }

int eliminate_common_subexpressions(Graph& g) {
  int changed = 0;
  // Constants with equal bytes: bucket by dtype and shape, then compare bytes.
  std::map<std::string, std::vector<Value*>> buckets;
  for (const auto& v : g.values())
    if (v->is_constant() && !is_output(g, v.get())) {
      std::string k(dtype_name(v->dtype));
      for (int64_t d : v->constant.shape()) (k += ',') += std::to_string(d);
      buckets[k].push_back(v.get());
    }
  std::vector<std::pair<Value*, Value*>> same;  // (duplicate, kept)
  for (auto& [k, vs] : buckets) {
    if (vs.size() < 2) continue;
    std::unordered_map<std::string, Value*> seen;
    for (Value* v : vs) {
      std::string bytes;
      put_tensor(bytes, v->constant);
      auto [it, fresh] = seen.emplace(std::move(bytes), v);
      if (!fresh) same.emplace_back(v, it->second);
    }
  }
  for (auto [dup, kept] : same) g.replace_uses(dup, kept);
  changed += static_cast<int>(same.size());

  std::unordered_map<std::string, Node*> seen;
  for (const auto& np : g.nodes()) {
    Node* n = np.get();
    if (n->outputs.empty()) continue;
    auto [it, fresh] = seen.emplace(node_key(*n), n);
    if (fresh) continue;
    Node* kept = it->second;
    // A duplicate producing a graph output goes only if the kept node can take its name over.
    bool ok = true;
    for (size_t k = 0; k < n->outputs.size(); ++k)
      if (is_output(g, n->outputs[k]) && is_output(g, kept->outputs[k])) ok = false;
    if (!ok) continue;
    for (size_t k = 0; k < n->outputs.size(); ++k) pass::substitute(g, n->outputs[k], kept->outputs[k], false);
    ++changed;
  }
  if (changed) g.remove_unused();
  return changed;
}

int simplify_identities(Graph& g) {
  int total = 0;
  for (int round = 0; round < 16; ++round) {
    int changed = 0;
    std::vector<int> uses = g.use_counts();
    std::vector<Node*> order;
    for (const auto& n : g.nodes()) order.push_back(n.get());
    for (Node* n : order) {
      if (n->outputs.empty()) continue;
      if (Value* src = no_op_source(*n, uses)) {
        if (pass::substitute(g, n->outputs[0], src, false)) {
          pass::detach(n);
          ++changed;
        }
        continue;
      }
      if (merge_with_producer(*n)) ++changed;
    }
    if (!changed) break;
    g.remove_unused();
    total += changed;
  }
  return total;
}

int simplify(Graph& g, bool cse) {
  int total = eliminate_dead_code(g);
  for (int round = 0; round < 16; ++round) {
    int changed = simplify_identities(g);
    if (cse) changed += eliminate_common_subexpressions(g);
    total += changed;
    if (!changed) break;
  }
  return total;
}

}  // namespace kiln::graph
