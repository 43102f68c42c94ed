// Batch-norm folding: inference batch norm is an affine map per channel, so after a conv2d or
// linear with constant weights it folds into them:
//   s = scale / sqrt(var + eps);  W' = W * s (per output channel);  b' = (b - mean) * s + bias.
// Computed in f64, stored in W's dtype.
#include <cmath>

#include "kiln/graph/pass_util.h"
#include "kiln/graph/passes.h"

namespace kiln::graph {

namespace {

// A constant's elements as doubles when it has exactly `n` of them and a float dtype.
std::optional<std::vector<double>> channel_values(const Value* v, int64_t n) {
  const Tensor* t = pass::const_of(v);
  if (!t || !is_floating(t->dtype()) || t->numel() != n) return std::nullopt;
  return t->to_vector<double>();
}

bool fold_one(Graph& g, Node* bn, const pass::UseIndex& uses) {
  Value* y = bn->input(0);
  Node* p = y ? y->producer : nullptr;
  if (!p || (p->op_name() != "conv2d" && p->op_name() != "linear") || p->input(3)) return false;
  if (uses.sole_user(y) != bn || p->outputs.size() != 1 || bn->outputs.size() != 1) return false;
  bool conv = p->op_name() == "conv2d";
  if (conv && p->attr_string("activation", "none") != "none") return false;
  // Batch norm's channel dim is 1: a linear's features only when its output is (N, C).
  if (!conv && pass::rank_of(y) != 2) return false;
  const Tensor* w = pass::const_of(p->input(1));
  if (!w || !is_floating(w->dtype()) || w->dim() < 2) return false;
  const int64_t c = w->shape()[0];
  auto scale = channel_values(bn->input(1), c), bias = channel_values(bn->input(2), c);
  auto mean = channel_values(bn->input(3), c), var = channel_values(bn->input(4), c);
  if (!scale || !bias || !mean || !var) return false;
  std::vector<double> b(static_cast<size_t>(c), 0.0);
  if (p->input(2)) {
    auto given = channel_values(p->input(2), c);
    if (!given) return false;
    b = *given;
  }
  const double eps = bn->attr_float("epsilon", 1e-5);
  std::vector<double> wv = w->to_vector<double>();
  const int64_t per_channel = w->numel() / std::max<int64_t>(c, 1);
  for (int64_t k = 0; k < c; ++k) {
    const auto i = static_cast<size_t>(k);
    double s = (*scale)[i] / std::sqrt((*var)[i] + eps);
    for (int64_t j = 0; j < per_channel; ++j) wv[static_cast<size_t>(k * per_channel + j)] *= s;
    b[i] = (b[i] - (*mean)[i]) * s + (*bias)[i];
  }
  Value* w2 = g.add_constant({}, to_dtype_raw(Tensor::from_vector<double>(wv, w->shape()), w->dtype()));
  Value* b2 = g.add_constant({}, to_dtype_raw(Tensor::from_vector<double>(b, {c}), w->dtype()));
  p->inputs.resize(3);
  p->inputs[1] = w2;
  p->inputs[2] = b2;
  // The conv/linear now produces batch norm's output value (its name and its readers).
  Value* out = bn->outputs[0];
  pass::detach(bn);
  y->producer = nullptr;
  p->outputs[0] = out;
  out->producer = p;
  out->producer_output = 0;
  return true;
}

}  // namespace

int fold_batch_norm(Graph& g) {
  pass::UseIndex uses(g);
  int folded = 0;
  std::vector<Node*> bns;
  for (const auto& n : g.nodes())
    if (n->op_name() == "batch_norm") bns.push_back(n.get());
  for (Node* bn : bns) folded += fold_one(g, bn, uses) ? 1 : 0;
  if (folded) g.remove_unused();
  return folded;
}

}  // namespace kiln::graph
