// Constant folding: a node whose inputs are all constants runs once, now, on its graph kernel and
// its outputs become constants; shape_of of a value whose shape is fully fixed folds from the
// value's declared shape. One sweep in graph order folds whole chains (Shape -> Gather -> Concat).
#include <algorithm>
#include <set>

#include "kiln/core/error.h"
#include "kiln/core/grad_mode.h"
#include "kiln/graph/kernels.h"
#include "kiln/graph/pass_util.h"
#include "kiln/graph/passes.h"

namespace kiln::graph {

namespace {

constexpr int64_t kMaxFoldedBytes = int64_t{64} << 20;

// Ops whose result is not a function of their inputs alone.
bool nondeterministic(std::string_view op) { return op == "dropout"; }

int64_t bytes_of(const Shape& s, DType dt) { return numel(s) * static_cast<int64_t>(element_size(dt)); }

// ONNX Shape-15's [start, end) of the dims, clamped to [0, rank].
Tensor shape_slice(const Node& n, const Shape& shape) {
  auto rank = static_cast<int64_t>(shape.size());
  auto clamp = [&](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + rank : v, 0, rank); };
  int64_t start = clamp(n.attr_int("start", 0));
  int64_t end = n.has_attr("end") ? clamp(n.attr_int("end")) : rank;
  std::vector<int64_t> dims;
  for (int64_t d = start; d < end; ++d) dims.push_back(shape[static_cast<size_t>(d)]);
  return Tensor::from_vector<int64_t>(dims, {static_cast<int64_t>(dims.size())});
}

// The node's outputs when it can be folded now, else empty.
std::vector<Tensor> evaluate(const Node& n) {
  if (nondeterministic(n.op_name())) return {};
  // Control flow is never run at compile time: a loop may be long (or, by design, endless).
  if (!n.subgraphs.empty()) return {};
  // Sequences and optionals are never constants (Value::constant is a tensor).
  if (runs_on_values(n)) return {};
  if (n.op_name() == "shape_of") {
    const Value* x = n.input(0);
    if (!x) return {};
    std::optional<Shape> s = pass::concrete(x);
    if (!s) return {};
    return {shape_slice(n, *s)};
  }
  std::vector<Tensor> args;
  for (const Value* in : n.inputs) {
    if (in && !in->is_constant()) return {};
    args.push_back(in ? in->constant : Tensor());
  }
  for (const Value* out : n.outputs)
    if (std::optional<Shape> s = pass::concrete(out); s && bytes_of(*s, out->dtype) > kMaxFoldedBytes) return {};
  KernelFn fn = kernel_table().find(n.op_name());
  if (!fn) return {};
  std::vector<Tensor> outs;
  try {
    NoGradGuard no_grad;
    outs = fn(n, args);
  } catch (const Error&) {
    return {};  // leave the error to the run, where it names the inputs it was given
  }
  if (outs.size() < n.outputs.size()) return {};
  for (size_t k = 0; k < n.outputs.size(); ++k) {
    if (!outs[k].defined() || bytes_of(outs[k].shape(), outs[k].dtype()) > kMaxFoldedBytes) return {};
    outs[k] = contiguous_raw(outs[k]);
    // A view of an input constant (reshape, squeeze) gets its own bytes: constants never alias.
    for (const Tensor& a : args)
      if (a.defined() && a.storage() == outs[k].storage()) outs[k] = clone_raw(outs[k]);
  }
  outs.resize(n.outputs.size());
  return outs;
}

}  // namespace

int fold_constants(Graph& g) {
  std::set<const Value*> outputs(g.outputs().begin(), g.outputs().end());
  // Snapshot: folding inserts clone nodes for graph outputs.
  std::vector<Node*> order;
  for (const auto& n : g.nodes()) order.push_back(n.get());
  int folded = 0;
  for (Node* n : order) {
    // A graph output that is already a copy of a constant stays as it is.
    if (n->op_name() == "clone" && n->input(0) && n->input(0)->is_constant()) continue;
    std::vector<Tensor> results = evaluate(*n);
    if (results.empty()) continue;
    std::vector<Value*> outs = n->outputs;
    pass::detach(n);
    for (size_t k = 0; k < outs.size(); ++k) {
      Value* v = outs[k];
      if (outputs.count(v)) {
        // Outputs stay produced values with their names: a constant and a copy of it. Readers
        // inside the graph read the constant, so folding goes on through them.
        Value* c = g.add_constant({}, results[k]);
        for (auto& node : g.mutable_nodes())
          for (Value*& in : node->inputs)
            if (in == v) in = c;
        pass::insert_before(g, n, "clone", {c}, {v});
        v->dtype = results[k].dtype();
        v->shape = fixed_shape(results[k].shape());
      } else {
        v->constant = results[k];
        v->dtype = results[k].dtype();
        v->shape = fixed_shape(results[k].shape());
      }
    }
    ++folded;
  }
  if (folded) g.remove_unused();
  return folded;
}

}  // namespace kiln::graph
