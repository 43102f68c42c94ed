// How an op joins the autograd tape: after computing its outputs, an op that has an input
// requiring grad (with grad mode on) calls record() with its backward closure. The closure gets
// the output gradients and which inputs need one, and returns a gradient per input (shaped like
// that input; undefined where not needed).
#pragma once

#include <initializer_list>
#include <vector>

#include "kiln/core/autograd_node.h"
#include "kiln/core/grad_mode.h"
#include "kiln/core/tensor.h"

namespace kiln::ops {

bool any_requires_grad(std::initializer_list<Tensor> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Multi-output form. Outputs are modified in place to point at the new node.
void record(const char* name, const std::vector<Tensor>& inputs, std::vector<Tensor*> outputs, BackwardFn fn);

// Single-output form: fn(grad_output, needs_grad) -> one gradient per input.
using UnaryBackwardFn = std::function<std::vector<Tensor>(const Tensor& grad, const std::vector<bool>& needs)>;
Tensor record(const char* name, const std::vector<Tensor>& inputs, Tensor output, UnaryBackwardFn fn);

// Guards an in-place write into `t`: refuses tensors autograd is tracking (a leaf that requires
// grad, or any tensor with history) while grad mode is on. Call bump_version() after writing.
void check_inplace(const Tensor& t, const char* op);

// Sums `grad` down to `shape`: the adjoint of broadcasting `shape` up to grad's shape.
Tensor reduce_to_shape(const Tensor& grad, const Shape& shape);

}  // namespace kiln::ops
