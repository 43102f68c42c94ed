#include "kiln/core/autograd_node.h"

#include <atomic>

#include "kiln/core/grad_mode.h"

namespace kiln {

namespace {
std::atomic<uint64_t> g_next_sequence_nr{0};
thread_local bool t_grad_enabled = true;
}  // namespace

bool GradMode::enabled() { return t_grad_enabled; }
void GradMode::set_enabled(bool on) { t_grad_enabled = on; }

Node::Node(std::string name) : name_(std::move(name)), sequence_nr_(g_next_sequence_nr++) {}

SavedTensor::SavedTensor(const Tensor& t, const char* op) : op_(op) {
  if (!t.defined()) return;
  tensor_ = t.detach();
  version_ = t.version();
}

const Tensor& SavedTensor::get() const {
  KILN_CHECK(tensor_.defined(), op_, ": a saved tensor was used after being freed");
  KILN_CHECK(tensor_.version() == version_, op_, ": a tensor saved for the backward pass was modified by an "
             "in-place operation (its version is ", tensor_.version(), ", expected ", version_,
             ")\nhelp: use the out-of-place form of the op that modified it");
  return tensor_;
}

std::vector<Tensor> FunctionNode::apply(const std::vector<Tensor>& grads) {
  KILN_CHECK(fn_ != nullptr, name(), ": trying to run backward through the graph a second time, but its "
             "saved tensors were already freed\nhelp: pass retain_graph=true to the first backward()");
  std::vector<bool> needs(next_edges.size());
  for (size_t i = 0; i < next_edges.size(); ++i) needs[i] = next_edges[i].node != nullptr;
  return fn_(grads, needs);
}

std::shared_ptr<Node> grad_accumulator(const Tensor& leaf) {
  auto& impl = leaf.impl();
  if (auto existing = impl.grad_accumulator.lock()) return existing;
  auto acc = std::make_shared<AccumulateGrad>(leaf.impl_ptr());
  impl.grad_accumulator = acc;
  return acc;
}

}  // namespace kiln
