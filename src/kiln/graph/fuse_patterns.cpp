// Pattern fusion: known multi-node subgraphs (as PyTorch and other exporters write them) become
// the one Kiln op that computes them in a single kernel. Each matcher starts at the pattern's last
// node, walks producers upwards, and fires only when every intermediate value has that single
// reader and is no graph output; the last node is then rewritten in place (keeping its output
// value and name) and the intermediates die with dead-code elimination.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "kiln/core/grad_mode.h"
#include "kiln/graph/pass_util.h"
#include "kiln/graph/passes.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::graph {

namespace {

using pass::const_of;
using pass::producer_of;
using pass::scalar_const;

struct Matcher {
  Graph& g;
  pass::UseIndex uses;
  std::set<const Node*> touched;

  explicit Matcher(Graph& graph) : g(graph), uses(graph) {}

  // v's producer when it is an `op` node, untouched, whose output v is read only by `user`.
  Node* only_for(const Value* v, std::string_view op, const Node* user) const {
    Node* p = producer_of(v, op);
    if (!p || touched.count(p) || p->outputs.size() != 1 || uses.sole_user(v) != user) return nullptr;
    return p;
  }
  // The single reader of n's output when it is an `op` node.
  Node* next(const Node* n, std::string_view op) const {
    if (n->outputs.size() != 1) return nullptr;
    Node* u = uses.sole_user(n->outputs[0]);
    return u && u->op_name() == op && !touched.count(u) ? u : nullptr;
  }
  void touch(std::initializer_list<const Node*> ns) {
    for (const Node* n : ns)
      if (n) touched.insert(n);
  }
};

bool near(double a, double b, double rtol = 1e-5) { return std::fabs(a - b) <= rtol * std::fabs(b); }

// A one-element f32 constant: the patterns' constants must not promote the f32 math they
// multiply into (an f64 constant would make the unfused result f64).
std::optional<double> f32_scalar(const Value* v) {
  const Tensor* t = const_of(v);
  return t && t->dtype() == DType::f32 ? scalar_const(v) : std::nullopt;
}

bool scalar_near(const Value* v, double x, double rtol = 1e-5) {
  auto s = f32_scalar(v);
  return s && near(*s, x, rtol);
}

// Pow's exponent: an f32 or integer one-element constant equal to e.
bool exponent_is(const Value* v, double e) {
  const Tensor* t = const_of(v);
  return t && (t->dtype() == DType::f32 || is_integral(t->dtype())) && scalar_const(v) == e;
}

// For a binary node reading `v`, its other operand.
Value* other(const Node* n, const Value* v) {
  if (!n || n->inputs.size() != 2) return nullptr;
  if (n->inputs[0] == v) return n->inputs[1];
  if (n->inputs[1] == v) return n->inputs[0];
  return nullptr;
}

bool is_f32(const Value* v) { return v && v->dtype == DType::f32; }

// ---- matmul(x, W) + b -> linear(x, W^T, b) for constant W (K, N) and b (N)
bool matmul_bias(Matcher& m, Node* add) {
  for (int side = 0; side < 2; ++side) {
    Value* mm_out = add->input(static_cast<size_t>(side));
    Value* b = add->input(static_cast<size_t>(1 - side));
    Node* mm = m.only_for(mm_out, "matmul", add);
    if (!mm) continue;
    Value* x = mm->input(0);
    const Tensor* w = const_of(mm->input(1));
    const Tensor* bias = const_of(b);
    if (!w || !bias || w->dim() != 2 || bias->dim() != 1 || bias->shape()[0] != w->shape()[1]) continue;
    if (!is_f32(x) || w->dtype() != DType::f32 || bias->dtype() != DType::f32 || pass::rank_of(x) < 2) continue;
    NoGradGuard no_grad;
    Value* wt = m.g.add_constant({}, contiguous_raw(ops::transpose(*w, 0, 1)));
    pass::rewrite(add, "linear", {x, wt, b});
    m.touch({mm, add});
    return true;
  }
  return false;
}

// ---- matmul(x, W) -> linear(x, W^T) for a constant W (K, N): one GEMM over all of x's rows
// (matmul broadcasts W over x's batch dims) and the form the bias and activation fusions know.
bool matmul_const_weight(Matcher& m, Node* mm) {
  Value* x = mm->input(0);
  const Tensor* w = const_of(mm->input(1));
  if (!w || w->dim() != 2 || w->dtype() != DType::f32 || !is_f32(x) || pass::rank_of(x) < 2) return false;
  NoGradGuard no_grad;
  Value* wt = m.g.add_constant({}, contiguous_raw(ops::transpose(*w, 0, 1)));
  pass::rewrite(mm, "linear", {x, wt});
  m.touch({mm});
  return true;
}

// ---- linear(x, W) + b -> linear(x, W, b) for a constant b (out)
bool linear_bias(Matcher& m, Node* add) {
  for (int side = 0; side < 2; ++side) {
    Node* lin = m.only_for(add->input(static_cast<size_t>(side)), "linear", add);
    if (!lin || lin->input(2) || lin->input(3)) continue;
    Value* b = add->input(static_cast<size_t>(1 - side));
    const Tensor* bias = const_of(b);
    const Tensor* w = const_of(lin->input(1));
    if (!bias || !w || bias->dim() != 1 || bias->dtype() != DType::f32 || bias->shape()[0] != w->shape()[0]) continue;
    pass::rewrite(add, "linear", {lin->input(0), lin->input(1), b});
    m.touch({lin, add});
    return true;
  }
  return false;
}

// ---- act(linear(x, W, b)) -> linear_act {activation}; relu(conv2d(...)) -> conv2d {activation: relu}
bool activation_into_producer(Matcher& m, Node* act) {
  std::string activation = "relu";
  if (act->op_name() == "gelu") activation = act->attr_string("approximate", "none") == "tanh" ? "gelu_tanh" : "gelu";
  if (Node* lin = m.only_for(act->input(0), "linear", act); lin && !lin->input(3)) {
    pass::rewrite(act, "linear_act", lin->inputs, {{"activation", activation}});
    m.touch({lin, act});
    return true;
  }
  Node* conv = m.only_for(act->input(0), "conv2d", act);
  if (activation != "relu" || !conv || conv->attr_string("activation", "none") != "none") return false;
  auto attrs = conv->attrs;
  attrs["activation"] = std::string("relu");
  pass::rewrite(act, "conv2d", conv->inputs, std::move(attrs));
  m.touch({conv, act});
  return true;
}

// ---- r + linear(...) / r + linear_act(...) -> linear{_act}(x, W, b, residual: r) when r has the
// output's shape: the GEMM adds r while each output tile is still in registers (a transformer's
// residual connections), instead of a second pass over the output. Patterns that rewrite a
// linear (bias, activation, batch-norm folding) leave one with a residual alone.
bool residual_into_linear(Matcher& m, Node* add) {
  for (int side = 0; side < 2; ++side) {
    const Value* y = add->input(static_cast<size_t>(side));
    Value* r = add->input(static_cast<size_t>(1 - side));
    Node* lin = m.only_for(y, "linear", add);
    if (!lin) lin = m.only_for(y, "linear_act", add);
    if (!lin || lin->input(3) || !is_f32(y) || !is_f32(r) || r == y) continue;
    if (!y->shape || !r->shape || *y->shape != *r->shape || !add->outputs[0]->shape ||
        *add->outputs[0]->shape != *y->shape)
      continue;
    std::vector<Value*> inputs{lin->input(0), lin->input(1), lin->input(2), r};
    pass::rewrite(add, lin->op_name(), inputs, lin->attrs);
    m.touch({lin, add});
    return true;
  }
  return false;
}

// ---- max_pool2d(conv2d(...)) -> conv2d {pool: "max", pool_*}: the kernel pools each chunk of the
// batch as soon as it is convolved, so the full-size convolution output never exists (f32 only).
bool pool_into_conv(Matcher& m, Node* pool) {
  Node* conv = m.only_for(pool->input(0), "conv2d", pool);
  if (!conv || conv->has_attr("pool") || !is_f32(conv->outputs[0])) return false;
  auto attrs = conv->attrs;
  attrs["pool"] = std::string("max");
  for (const char* key : {"kernel_shape", "strides", "pads", "ceil_mode", "dilations"})
    if (auto it = pool->attrs.find(key); it != pool->attrs.end()) attrs[std::string("pool_") + key] = it->second;
  pass::rewrite(pool, "conv2d", conv->inputs, std::move(attrs));
  m.touch({conv, pool});
  return true;
}

// ---- GELU written out: x * 0.5 * (1 + f(x)), given the node `one_plus` = 1 + f(x). The
// products may come in any of the orders exporters use: (x * a) * 0.5, (a * 0.5) * x,
// a * (x * 0.5), (0.5 * x) * a. Returns the last node, or nullptr.
Node* gelu_tail(Matcher& m, Node* one_plus, const Value* x, std::vector<Node*>& chain) {
  Node* m1 = m.next(one_plus, "mul");
  if (!m1) return nullptr;
  Value* o1 = other(m1, one_plus->outputs[0]);
  chain.push_back(m1);
  if (o1 == x || scalar_near(o1, 0.5)) {
    Node* m2 = m.next(m1, "mul");
    Value* o2 = m2 ? other(m2, m1->outputs[0]) : nullptr;
    if (!m2 || !(o1 == x ? scalar_near(o2, 0.5) : o2 == x)) return nullptr;
    chain.push_back(m2);
    return m2;
  }
  Node* half = m.only_for(o1, "mul", m1);
  if (!half || !scalar_near(other(half, x), 0.5)) return nullptr;
  chain.push_back(half);
  return m1;
}

// The `1 + e` node reading e's output.
Node* plus_one(Matcher& m, const Node* e) {
  Node* a = m.next(e, "add");
  return a && scalar_near(other(a, e->outputs[0]), 1.0) ? a : nullptr;
}

// erf(x / sqrt(2)) or erf(x * (1/sqrt(2))) -> ... -> gelu(x)
bool gelu_erf(Matcher& m, Node* erf) {
  Value* u = erf->input(0);
  Value* x = nullptr;
  Node* scale = m.only_for(u, "div", erf);
  if (scale && scalar_near(scale->input(1), std::sqrt(2.0))) x = scale->input(0);
  if (!scale && (scale = m.only_for(u, "mul", erf))) {
    for (int i = 0; i < 2 && !x; ++i)
      if (scalar_near(scale->input(static_cast<size_t>(i)), std::sqrt(0.5))) x = scale->input(static_cast<size_t>(1 - i));
  }
  if (!x || !is_f32(x)) return false;
  Node* a = plus_one(m, erf);
  if (!a) return false;
  std::vector<Node*> chain;
  Node* last = gelu_tail(m, a, x, chain);
  if (!last) return false;
  pass::rewrite(last, "gelu", {x}, {{"approximate", std::string("none")}});
  m.touch({scale, erf, a});
  for (Node* n : chain) m.touch({n});
  return true;
}

// x^3 as pow(x, 3), x * (x * x) or (x * x) * x; the nodes are added to `chain`.
bool is_cube_of(Matcher& m, const Value* c, const Value* x, const Node* user, std::vector<Node*>& chain) {
  if (Node* p = m.only_for(c, "pow", user)) {
    chain.push_back(p);
    return p->input(0) == x && exponent_is(p->input(1), 3.0);
  }
  Node* outer = m.only_for(c, "mul", user);
  if (!outer) return false;
  chain.push_back(outer);
  for (int i = 0; i < 2; ++i) {
    if (outer->input(static_cast<size_t>(i)) != x) continue;
    Node* sq = m.only_for(outer->input(static_cast<size_t>(1 - i)), "mul", outer);
    if (sq && sq->input(0) == x && sq->input(1) == x) {
      chain.push_back(sq);
      return true;
    }
  }
  return false;
}

// tanh(sqrt(2/pi) * (x + 0.044715 x^3)) -> ... -> gelu(x, approximate = tanh)
bool gelu_tanh(Matcher& m, Node* tanh) {
  constexpr double kC = 0.7978845608028654, kA = 0.044715;
  std::vector<Node*> chain{tanh};
  Node* sc = m.only_for(tanh->input(0), "mul", tanh);
  if (!sc) return false;
  chain.push_back(sc);
  Value* inner = nullptr;
  for (int i = 0; i < 2 && !inner; ++i)
    if (scalar_near(sc->input(static_cast<size_t>(i)), kC)) inner = sc->input(static_cast<size_t>(1 - i));
  Node* sum = inner ? m.only_for(inner, "add", sc) : nullptr;
  if (!sum) return false;
  chain.push_back(sum);
  Value* x = nullptr;
  for (int i = 0; i < 2 && !x; ++i) {
    Value* cand = sum->input(static_cast<size_t>(1 - i));
    Node* q = m.only_for(sum->input(static_cast<size_t>(i)), "mul", sum);
    if (!q || !is_f32(cand)) continue;
    for (int j = 0; j < 2 && !x; ++j) {
      if (!scalar_near(q->input(static_cast<size_t>(j)), kA)) continue;
      std::vector<Node*> cube;
      if (is_cube_of(m, q->input(static_cast<size_t>(1 - j)), cand, q, cube)) {
        x = cand;
        chain.push_back(q);
        chain.insert(chain.end(), cube.begin(), cube.end());
      }
    }
  }
  if (!x) return false;
  Node* a = plus_one(m, tanh);
  if (!a) return false;
  chain.push_back(a);
  Node* last = gelu_tail(m, a, x, chain);
  if (!last) return false;
  pass::rewrite(last, "gelu", {x}, {{"approximate", std::string("tanh")}});
  for (Node* n : chain) m.touch({n});
  return true;
}

// Reduction axes of a mean node normalised against `rank` (-1: unknown, then only negative
// axes work), when it keeps dims.
std::optional<std::vector<int64_t>> mean_axes(const Node& n, int64_t rank) {
  if (n.attr_int("keepdims", 1) != 1) return std::nullopt;
  auto axes = pass::const_ints(n, 1, "axes");
  if (!axes || axes->empty()) return std::nullopt;
  std::vector<int64_t> out;
  for (int64_t a : *axes) {
    if (rank >= 0 && a < 0) a += rank;
    else if (rank < 0 && a >= 0) return std::nullopt;
    out.push_back(a);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---- layer norm written out (PyTorch, opsets < 17), from its division node:
//   mu = mean(x, axes); d = x - mu; v = mean(d^2 | d*d, axes); n = d / sqrt(v + eps);
//   [n * gamma] [+ beta] -> layer_norm(x, gamma, beta) {axis, epsilon}
bool layer_norm(Matcher& m, Node* div) {
  Value* d = div->input(0);
  Node* sub = producer_of(d, "sub");
  if (!sub || m.touched.count(sub) || m.uses.is_output(d)) return false;
  Value* x = sub->input(0);
  Node* mu = m.only_for(sub->input(1), "mean", sub);
  if (!mu || mu->input(0) != x || !is_f32(x)) return false;
  Node* sq = m.only_for(div->input(1), "sqrt", div);
  Node* add_eps = sq ? m.only_for(sq->input(0), "add", sq) : nullptr;
  if (!add_eps) return false;
  Value* var = nullptr;
  double eps = 0;
  for (int i = 0; i < 2 && !var; ++i)
    if (auto e = f32_scalar(add_eps->input(static_cast<size_t>(i)))) {
      eps = *e;
      var = add_eps->input(static_cast<size_t>(1 - i));
    }
  Node* mv = var ? m.only_for(var, "mean", add_eps) : nullptr;
  if (!mv) return false;
  Node* p = nullptr;
  if ((p = m.only_for(mv->input(0), "pow", mv)) && (p->input(0) != d || !exponent_is(p->input(1), 2.0))) return false;
  if (!p && (p = m.only_for(mv->input(0), "mul", mv)) && (p->input(0) != d || p->input(1) != d)) return false;
  if (!p) return false;
  // d is read by the square and the division only.
  if (m.uses.count(d) != (p->op_name() == "mul" ? 3 : 2)) return false;
  int64_t rank = pass::rank_of(x);
  auto a1 = mean_axes(*mu, rank), a2 = mean_axes(*mv, rank);
  if (!a1 || !a2 || *a1 != *a2) return false;
  // The axes must be the trailing dims: k, k+1, ..., last.
  int64_t last = rank >= 0 ? rank - 1 : -1;
  for (size_t i = 0; i < a1->size(); ++i)
    if ((*a1)[a1->size() - 1 - i] != last - static_cast<int64_t>(i)) return false;
  const int64_t axis = a1->front();
  auto n_norm = static_cast<int64_t>(a1->size());
  // Optional affine tail, constants confined to the normalised dims.
  auto affine_ok = [&](const Value* c) {
    const Tensor* t = const_of(c);
    if (!t || t->dtype() != DType::f32 || t->dim() > n_norm) return false;
    if (t->numel() == 1) return true;
    auto xs = pass::concrete(x);
    if (!xs) return false;
    for (int64_t i = 0; i < t->dim(); ++i)
      if (t->shape()[static_cast<size_t>(t->dim() - 1 - i)] != (*xs)[xs->size() - 1 - static_cast<size_t>(i)])
        return false;
    return true;
  };
  Node* last_node = div;
  Value* gamma = nullptr;
  Value* beta = nullptr;
  Node* mul = m.next(div, "mul");
  if (mul && affine_ok(other(mul, div->outputs[0]))) {
    gamma = other(mul, div->outputs[0]);
    last_node = mul;
  }
  Node* add = m.next(last_node, "add");
  if (add && affine_ok(other(add, last_node->outputs[0]))) {
    beta = other(add, last_node->outputs[0]);
    last_node = add;
  }
  std::vector<Value*> ins{x, gamma, beta};
  while (ins.size() > 1 && !ins.back()) ins.pop_back();
  pass::rewrite(last_node, "layer_norm", ins, {{"axis", axis}, {"epsilon", eps}});
  m.touch({mu, sub, p, mv, add_eps, sq, div, last_node});
  return true;
}

// ---- attention, from its last matmul:
//   s = q @ permute(k) (last two dims swapped); s = s / c | s * c; [s = s + causal mask |
//   where(mask, s, -inf)]; p = softmax(s, -1); o = p @ v  -> scaled_dot_product_attention
// when c scales by 1/sqrt(D).

// Whether `keep` (T, S, row-major, true = attend) is exactly the causal pattern j <= i.
bool causal_pattern(const std::vector<bool>& keep, int64_t t, int64_t s) {
  if (t != s) return false;
  for (int64_t i = 0; i < t; ++i)
    for (int64_t j = 0; j < s; ++j)
      if (keep[static_cast<size_t>(i * s + j)] != (j <= i)) return false;
  return true;
}

// A mask constant: rank >= 2, all leading dims 1; its (T, S) trailing block.
std::optional<std::pair<int64_t, int64_t>> mask_dims(const Tensor& t) {
  if (t.dim() < 2 || t.dim() > 4) return std::nullopt;
  for (int64_t i = 0; i + 2 < t.dim(); ++i)
    if (t.shape()[static_cast<size_t>(i)] != 1) return std::nullopt;
  return std::pair{t.shape()[static_cast<size_t>(t.dim() - 2)], t.shape()[static_cast<size_t>(t.dim() - 1)]};
}

constexpr double kMasked = -1e4;  // additive mask values at or below this count as -inf

// If `masked` = mask(s2) for a causal mask node read only by `user`, returns that node and s2.
std::pair<Node*, Value*> causal_mask(Matcher& m, Value* masked, const Node* user) {
  if (Node* add = m.only_for(masked, "add", user)) {
    for (int i = 0; i < 2; ++i) {
      const Tensor* c = const_of(add->input(static_cast<size_t>(i)));
      auto dims = c ? mask_dims(*c) : std::nullopt;
      if (!dims || c->dtype() != DType::f32) continue;
      std::vector<double> v = c->to_vector<double>();
      std::vector<bool> keep(v.size());
      bool clean = true;
      for (size_t k = 0; k < v.size(); ++k) {
        keep[k] = v[k] == 0.0;
        clean = clean && (v[k] == 0.0 || v[k] <= kMasked);
      }
      if (clean && causal_pattern(keep, dims->first, dims->second)) return {add, add->input(static_cast<size_t>(1 - i))};
    }
    return {nullptr, nullptr};
  }
  if (Node* w = m.only_for(masked, "where", user)) {
    const Tensor* cond = const_of(w->input(0));
    auto dims = cond ? mask_dims(*cond) : std::nullopt;
    if (!dims) return {nullptr, nullptr};
    for (int slot = 1; slot <= 2; ++slot) {
      auto fill = f32_scalar(w->input(static_cast<size_t>(3 - slot)));
      if (!fill || !(*fill <= kMasked)) continue;
      std::vector<bool> keep;
      for (double c : cond->to_vector<double>()) keep.push_back((c != 0.0) == (slot == 1));
      if (causal_pattern(keep, dims->first, dims->second)) return {w, w->input(static_cast<size_t>(slot))};
    }
  }
  return {nullptr, nullptr};
}

bool attention(Matcher& m, Node* out_mm) {
  Value* v = out_mm->input(1);
  Node* sm = m.only_for(out_mm->input(0), "softmax", out_mm);
  if (!sm || !is_f32(v) || pass::rank_of(v) != 4) return false;
  int64_t axis = sm->attr_int("axis", -1);
  if (axis != -1 && axis != 3) return false;
  Value* scaled = sm->input(0);
  auto [mask, s2] = causal_mask(m, scaled, sm);
  bool causal = mask != nullptr;
  if (!causal) s2 = scaled;
  const Node* scale_user = causal ? mask : sm;
  double scale = 0;
  Node* sc = m.only_for(s2, "div", scale_user);
  Value* s = nullptr;
  if (sc) {
    auto c = f32_scalar(sc->input(1));
    if (!c || *c == 0) return false;
    scale = 1.0 / *c;
    s = sc->input(0);
  } else if ((sc = m.only_for(s2, "mul", scale_user))) {
    for (int i = 0; i < 2 && !s; ++i)
      if (auto c = f32_scalar(sc->input(static_cast<size_t>(i)))) {
        scale = *c;
        s = sc->input(static_cast<size_t>(1 - i));
      }
  }
  if (!sc || !s) return false;
  Node* qk = m.only_for(s, "matmul", sc);
  Node* kt = qk ? m.only_for(qk->input(1), "permute", qk) : nullptr;
  if (!kt || !kt->has_attr("perm")) return false;
  Value* q = qk->input(0);
  Value* k0 = kt->input(0);
  std::vector<int64_t> p = kt->attr_ints("perm");
  if (p.size() != 4 || pass::rank_of(q) != 4 || !is_f32(q) || !is_f32(k0)) return false;
  const Dim& d = (*q->shape)[3];
  if (!d.is_fixed() || !near(scale, 1.0 / std::sqrt(static_cast<double>(d.size)))) return false;
  // k = kt with its last two dims swapped back: permute(k0, p with the last two swapped).
  std::vector<int64_t> kp{p[0], p[1], p[3], p[2]};
  Value* k = k0;
  if (kp != std::vector<int64_t>{0, 1, 2, 3}) {
    k = m.g.add_value({}, k0->dtype, std::nullopt);
    pass::insert_before(m.g, out_mm, "permute", {k0}, {k}, {{"perm", kp}});
  }
  pass::rewrite(out_mm, "scaled_dot_product_attention", {q, k, v}, {{"causal", int64_t{causal ? 1 : 0}}});
  m.touch({sm, mask, sc, qk, kt, out_mm});
  return true;
}

}  // namespace

int fuse_patterns(Graph& g) {
  int total = 0;
  for (int round = 0; round < 8; ++round) {
    Matcher m(g);
    int changed = 0;
    std::vector<Node*> order;
    for (const auto& n : g.nodes()) order.push_back(n.get());
    for (Node* n : order) {
      if (m.touched.count(n)) continue;
      std::string_view op = n->op_name();
      bool hit = false;
      if (op == "erf") hit = gelu_erf(m, n);
      else if (op == "tanh") hit = gelu_tanh(m, n);
      else if (op == "div") hit = layer_norm(m, n);
      else if (op == "matmul") hit = attention(m, n) || matmul_const_weight(m, n);
      else if (op == "add") hit = matmul_bias(m, n) || linear_bias(m, n) || residual_into_linear(m, n);
      else if (op == "relu" || op == "gelu") hit = activation_into_producer(m, n);
      else if (op == "max_pool2d") hit = pool_into_conv(m, n);
      changed += hit ? 1 : 0;
    }
    if (!changed) break;
    g.remove_unused();
    total += changed;
  }
  return total;
}

}  // namespace kiln::graph
