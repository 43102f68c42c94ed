// Graph kernels for the reductions. Graph form (ONNX Reduce* semantics):
//   sum, mean, amax, min, logsumexp   (x, [axes]) {axes, keepdims (default 1), noop_with_empty_axes}
//                                      — no axes reduces every dim, unless noop_with_empty_axes
//   argmax                            (x) {axis, keepdims}: i64 indices of the first maximum
//   var                               (x) {axes, keepdims, unbiased}
#include "kiln/graph/kernels.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/reduce.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::graph {

namespace {

struct ReduceArgs {
  std::vector<int64_t> dims;  // empty: all
  bool keepdim = true;
  bool noop = false;
};

ReduceArgs reduce_args(const Node& node, const std::vector<Tensor>& in) {
  if (in.empty() || !in[0].defined()) kernel_error(node, "missing input x");
  ReduceArgs r;
  r.keepdim = node.attr_int("keepdims", 1) != 0;
  std::vector<int64_t> axes;
  if (in.size() > 1 && in[1].defined()) axes = int_values(in[1], node, "axes");
  else axes = node.attr_ints("axes", {});
  if (axes.empty()) {
    r.noop = node.attr_int("noop_with_empty_axes", 0) != 0;
    for (int64_t d = 0; d < in[0].dim(); ++d) r.dims.push_back(d);
  } else {
    for (int64_t a : axes) r.dims.push_back(normalize_axis(a, in[0].dim(), node));
  }
  return r;
}

using ReduceFn = Tensor (*)(const Tensor&, const ops::Dims&, bool);

Tensor min_reduce(const Tensor& x, const ops::Dims& dims, bool keepdim) {
  return ops::neg(ops::amax(ops::neg(x), dims, keepdim));
}

Tensor logsumexp_reduce(const Tensor& x, const ops::Dims& dims, bool keepdim) {
  return ops::logsumexp(x, dims, keepdim);
}

template <ReduceFn F>
std::vector<Tensor> reduce_kernel(const Node& node, const std::vector<Tensor>& in) {
  ReduceArgs r = reduce_args(node, in);
  const Tensor& x = in[0];
  if (r.noop) return {ops::clone(x)};
  if (x.dim() == 0) return {ops::clone(x)};
  return {F(x, r.dims, r.keepdim)};
}

std::vector<Tensor> argmax_kernel(const Node& node, const std::vector<Tensor>& in) {
  if (in.empty() || !in[0].defined()) kernel_error(node, "missing input x");
  const Tensor& x = in[0];
  int64_t axis = normalize_axis(node.attr_int("axis", 0), x.dim(), node);
  bool keepdim = node.attr_int("keepdims", 1) != 0;
  if (node.attr_int("select_last_index", 0) == 0) return {ops::argmax(x, axis, keepdim)};
  // The last maximum is the first one of the reversed axis.
  int64_t size = x.shape()[axis];
  std::vector<int64_t> reversed(static_cast<size_t>(size));
  for (int64_t i = 0; i < size; ++i) reversed[static_cast<size_t>(i)] = size - 1 - i;
  Tensor idx = ops::argmax(ops::index_select(x, axis, Tensor::from_vector(reversed)), axis, keepdim);
  return {ops::rsub(static_cast<double>(size - 1), idx)};
}

std::vector<Tensor> var_kernel(const Node& node, const std::vector<Tensor>& in) {
  ReduceArgs r = reduce_args(node, in);
  return {ops::var(in[0], r.dims, node.attr_int("unbiased", 0) != 0, r.keepdim)};
}

}  // namespace

void register_reduce_kernels(KernelTable& t) {
  t.add("sum", reduce_kernel<ops::sum>);
  t.add("mean", reduce_kernel<ops::mean>);
  t.add("amax", reduce_kernel<ops::amax>);
  t.add("min", reduce_kernel<min_reduce>);
  t.add("logsumexp", reduce_kernel<logsumexp_reduce>);
  t.add("argmax", argmax_kernel);
  t.add("var", var_kernel);
}

}  // namespace kiln::graph
