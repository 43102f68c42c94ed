#include "kiln/autograd/engine.h"

#include <unordered_map>
#include <unordered_set>

#include "kiln/core/autograd_node.h"
#include "kiln/core/grad_mode.h"
#include "kiln/ops/elementwise.h"

namespace kiln::autograd {

namespace {

thread_local GradReadyHook t_grad_ready;

void accumulate_into_leaf(const std::shared_ptr<TensorImpl>& leaf, const Tensor& g);

void accumulate_and_announce(const std::shared_ptr<TensorImpl>& leaf, const Tensor& g) {
  accumulate_into_leaf(leaf, g);
  if (leaf && t_grad_ready) t_grad_ready(Tensor(leaf));
}

void accumulate_into_leaf(const std::shared_ptr<TensorImpl>& leaf, const Tensor& g) {
  if (!leaf) return;  // the leaf was destroyed; nothing to accumulate into
  Tensor grad(leaf->grad);
  KILN_ASSERT(g.shape() == leaf->shape, "gradient shape ", shape_str(g.shape()), " for a leaf of shape ",
              shape_str(leaf->shape));
  Tensor gc = to_dtype_raw(g, leaf->dtype);
  if (!grad.defined()) {
    // Own a fresh buffer: g may alias another tensor's data (add passes its gradient through),
    // and optimisers and clipping later write into .grad in place.
    leaf->grad = clone_raw(gc).impl_ptr();
  } else {
    ops::add_(grad, gc);
  }
}

struct InputBuffer {
  std::vector<Tensor> grads;
  void add(uint32_t slot, const Tensor& g) {
    if (grads.size() <= slot) grads.resize(slot + 1);
    if (!grads[slot].defined())
      grads[slot] = g;
    else
      grads[slot] = ops::add(grads[slot], g);
  }
};

}  // namespace

void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs, BackwardOptions options) {
  KILN_CHECK(grad_outputs.empty() || grad_outputs.size() == outputs.size(), "backward: got ", grad_outputs.size(),
             " gradients for ", outputs.size(), " outputs");
  NoGradGuard no_grad;
  std::unordered_map<Node*, InputBuffer> buffers;
  std::vector<std::shared_ptr<Node>> roots;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    KILN_CHECK(out.requires_grad(), "backward: output ", i, " does not require grad (no operation on its path "
               "used a tensor with requires_grad)");
    Tensor g = i < grad_outputs.size() ? grad_outputs[i] : Tensor();
    if (!g.defined()) {
      KILN_CHECK(out.numel() == 1, "backward: a gradient can be implied only for a one-element output, got shape ",
                 shape_str(out.shape()), "\nhelp: pass grad_outputs explicitly");
      g = Tensor::ones(out.shape(), out.dtype());
    }
    KILN_CHECK(g.shape() == out.shape(), "backward: gradient shape ", shape_str(g.shape()),
               " does not match output shape ", shape_str(out.shape()));
    if (out.is_leaf()) {
      accumulate_and_announce(out.impl_ptr(), g);
      continue;
    }
    buffers[out.grad_fn().get()].add(out.output_nr(), g);
    roots.push_back(out.grad_fn());
  }

  // Count, for each node, how many edges point at it from the part of the graph we will run.
  std::unordered_map<Node*, int> deps;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  for (auto& r : roots)
    if (seen.insert(r.get()).second) stack.push_back(r.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& e : n->next_edges) {
      if (!e.node) continue;
      ++deps[e.node.get()];
      if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
  }

  std::vector<std::shared_ptr<Node>> ready;
  std::unordered_set<Node*> queued;
  for (auto& r : roots)
    if (deps[r.get()] == 0 && queued.insert(r.get()).second) ready.push_back(r);
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.back();
    ready.pop_back();
    InputBuffer buf = std::move(buffers[node.get()]);
    buffers.erase(node.get());
    if (auto* acc = dynamic_cast<AccumulateGrad*>(node.get())) {
      if (!buf.grads.empty() && buf.grads[0].defined()) accumulate_and_announce(acc->leaf(), buf.grads[0]);
      continue;
    }
    buf.grads.resize(node->output_shapes.size());
    bool any = false;
    for (size_t k = 0; k < buf.grads.size(); ++k) {
      if (buf.grads[k].defined()) {
        any = true;
      } else if (is_floating(node->output_dtypes[k])) {
        buf.grads[k] = Tensor::zeros(node->output_shapes[k], node->output_dtypes[k]);
      }
    }
    std::vector<Tensor> in_grads;
    if (any) {
      in_grads = node->apply(buf.grads);
      KILN_ASSERT(in_grads.size() == node->next_edges.size(), node->name(), " returned ", in_grads.size(),
                  " gradients for ", node->next_edges.size(), " inputs");
    }
    if (!options.retain_graph) node->release_saved();
    for (size_t i = 0; i < node->next_edges.size(); ++i) {
      const Edge& e = node->next_edges[i];
      if (!e.node) continue;
      if (any && in_grads[i].defined()) buffers[e.node.get()].add(e.input_nr, in_grads[i]);
      if (--deps[e.node.get()] == 0 && queued.insert(e.node.get()).second) ready.push_back(e.node);
    }
  }
}

GradReadyHookGuard::GradReadyHookGuard(GradReadyHook hook) : previous_(std::move(t_grad_ready)) {
  t_grad_ready = std::move(hook);
}
GradReadyHookGuard::~GradReadyHookGuard() { t_grad_ready = std::move(previous_); }

}  // namespace kiln::autograd
