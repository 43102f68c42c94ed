#include "kiln/ops/autograd_record.h"

#include "kiln/ops/reduce.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::ops {

bool any_requires_grad(std::initializer_list<Tensor> inputs) {
  if (!GradMode::enabled()) return false;
  for (const auto& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::enabled()) return false;
  for (const auto& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}

void record(const char* name, const std::vector<Tensor>& inputs, std::vector<Tensor*> outputs, BackwardFn fn) {
  if (!any_requires_grad(inputs)) return;
  auto node = std::make_shared<FunctionNode>(name, std::move(fn));
  node->next_edges.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& in = inputs[i];
    if (!in.requires_grad()) continue;
    if (in.is_leaf())
      node->next_edges[i] = Edge{grad_accumulator(in), 0};
    else
      node->next_edges[i] = Edge{in.grad_fn(), in.output_nr()};
  }
  for (uint32_t k = 0; k < outputs.size(); ++k) {
    Tensor& out = *outputs[k];
    node->output_shapes.push_back(out.shape());
    node->output_dtypes.push_back(out.dtype());
    if (!is_floating(out.dtype())) continue;  // integer outputs (indices) carry no gradient
    auto& impl = out.impl();
    impl.requires_grad = true;
    impl.grad_fn = node;
    impl.output_nr = k;
  }
}

Tensor record(const char* name, const std::vector<Tensor>& inputs, Tensor output, UnaryBackwardFn fn) {
  if (!any_requires_grad(inputs)) return output;
  record(name, inputs, {&output},
         [fn = std::move(fn)](const std::vector<Tensor>& grads, const std::vector<bool>& needs) {
           return fn(grads[0], needs);
         });
  return output;
}

void check_inplace(const Tensor& t, const char* op) {
  if (!GradMode::enabled()) return;
  KILN_CHECK(!(t.requires_grad() && t.is_leaf()), op, ": a leaf tensor that requires grad cannot be "
             "modified in place while grad mode is on\nhelp: wrap the update in a NoGradGuard");
  KILN_CHECK(!t.requires_grad(), op, ": in-place modification of a tensor that has autograd history is "
             "not supported\nhelp: use the out-of-place form");
}

Tensor reduce_to_shape(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  int64_t lead = grad.dim() - static_cast<int64_t>(shape.size());
  KILN_ASSERT(lead >= 0, "reduce_to_shape: ", shape_str(grad.shape()), " -> ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < grad.dim(); ++d) {
    if (d < lead || (shape[d - lead] == 1 && grad.shape()[d] != 1)) dims.push_back(d);
  }
  Tensor s = dims.empty() ? grad : sum(grad, dims, /*keepdim=*/true);
  return reshape(s, shape);
}

}  // namespace kiln::ops
