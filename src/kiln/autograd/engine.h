// The backward pass: walks the tape from the given outputs to the leaves, in dependency order,
// summing gradients that meet at a node and accumulating leaf gradients into .grad.
#pragma once

#include <functional>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::autograd {

struct BackwardOptions {
  bool retain_graph = false;  // keep saved tensors so backward can run through this graph again
};

// d(outputs)/d(leaves) . grad_outputs. An undefined grad_output means ones, allowed only for a
// one-element output (the loss).
void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs = {},
              BackwardOptions options = {});
inline void backward(const Tensor& output, const Tensor& grad_output = Tensor(), BackwardOptions options = {}) {
  backward(std::vector<Tensor>{output}, std::vector<Tensor>{grad_output}, options);
}

// Called by backward right after a leaf's gradient is accumulated into .grad (once per leaf per
// backward call, when that leaf's gradient for this pass is complete). Data-parallel training
// uses it to start reducing gradients while backward is still producing earlier layers'.
// Thread-local; the guard installs a hook for its scope and restores the previous one.
using GradReadyHook = std::function<void(const Tensor& leaf)>;
class GradReadyHookGuard {
 public:
  explicit GradReadyHookGuard(GradReadyHook hook);
  ~GradReadyHookGuard();
  GradReadyHookGuard(const GradReadyHookGuard&) = delete;
  GradReadyHookGuard& operator=(const GradReadyHookGuard&) = delete;

 private:
  GradReadyHook previous_;
};

}  // namespace kiln::autograd
