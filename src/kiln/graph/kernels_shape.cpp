// Graph kernels for the ops that move elements. Graph form (ONNX semantics where it differs
// from the eager op; parameters that ONNX passes as tensors are inputs here too):
//   reshape       (x, [shape]) {shape, allowzero}: 0 copies the input dim unless allowzero, -1 infers
//   flatten       (x) {start_dim, end_dim}
//   squeeze       (x, [axes]) {axes}: no axes squeezes every size-1 dim
//   unsqueeze     (x, [axes]) {axes}: axes index the output
//   permute       (x) {perm}: no perm reverses the dims
//   transpose     (x) {dim0, dim1}
//   slice         (x, starts, ends, [axes], [steps]) or (x) {dim, start, end, step}; steps may be negative
//   expand        (x, shape): bidirectional broadcast of x with shape
//   index_select  (x, indices) {axis}: ONNX Gather — any-rank indices, negative ones count from the end
//   gather        (x, indices) {axis}: ONNX GatherElements
//   cat, stack    (xs...) {axis}
//   split         (x, [sizes]) {axis, sizes}: one output per node output; no sizes splits evenly
//   pad           (x) {pads (torch layout: last dim first), value}
//   topk          (x, [k]) {k, axis, largest}: (values, indices), sorted
#include <algorithm>
#include <numeric>

#include "kiln/graph/kernels.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::graph {

namespace {

// Integer parameters from input i when present, else from attribute `key`, else `fallback`.
std::optional<std::vector<int64_t>> ints_from(const Node& node, const std::vector<Tensor>& in, size_t i,
                                              std::string_view key) {
  if (i < in.size() && in[i].defined()) return int_values(in[i], node, key);
  if (node.has_attr(key)) return node.attr_ints(key);
  return std::nullopt;
}

std::vector<Tensor> reshape_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "data");
  auto spec = ints_from(node, in, 1, "shape");
  if (!spec) kernel_error(node, "needs a shape input or attribute");
  bool allowzero = node.attr_int("allowzero", 0) != 0;
  Shape shape = *spec;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0 && !allowzero) {
      if (i >= x.shape().size())
        kernel_error(node,
                     detail::concat("shape ", shape_str(*spec), " copies dim ", i, " of an input of rank ", x.dim()));
      shape[i] = x.shape()[i];
    }
  }
  return {ops::reshape(x, shape)};
}

std::vector<Tensor> flatten_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {ops::flatten(required_input(node, in, 0, "x"), node.attr_int("start_dim", 0), node.attr_int("end_dim", -1))};
}

std::vector<Tensor> squeeze_kernel(const Node& node, const std::vector<Tensor>& in) {
  Tensor x = required_input(node, in, 0, "x");
  auto axes = ints_from(node, in, 1, "axes");
  std::vector<int64_t> dims;
  if (axes) {
    for (int64_t a : *axes) dims.push_back(normalize_axis(a, x.dim(), node));
    for (int64_t d : dims)
      if (x.shape()[d] != 1) kernel_error(node, detail::concat("cannot squeeze dim ", d, " of size ", x.shape()[d]));
  } else {
    for (int64_t d = 0; d < x.dim(); ++d)
      if (x.shape()[d] == 1) dims.push_back(d);
  }
  std::sort(dims.rbegin(), dims.rend());
  dims.erase(std::unique(dims.begin(), dims.end()), dims.end());
  for (int64_t d : dims) x = ops::squeeze(x, d);
  return {x};
}

std::vector<Tensor> unsqueeze_kernel(const Node& node, const std::vector<Tensor>& in) {
  Tensor x = required_input(node, in, 0, "x");
  auto axes = ints_from(node, in, 1, "axes");
  if (!axes) kernel_error(node, "needs axes");
  int64_t out_rank = x.dim() + static_cast<int64_t>(axes->size());
  std::vector<int64_t> dims;
  for (int64_t a : *axes) dims.push_back(normalize_axis(a, out_rank, node));
  std::sort(dims.begin(), dims.end());
  if (std::adjacent_find(dims.begin(), dims.end()) != dims.end()) kernel_error(node, "repeated axis");
  for (int64_t d : dims) x = ops::unsqueeze(x, d);
  return {x};
}

std::vector<Tensor> permute_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "x");
  std::vector<int64_t> perm(static_cast<size_t>(x.dim()));
  std::iota(perm.rbegin(), perm.rend(), 0);
  if (node.has_attr("perm")) perm = node.attr_ints("perm");
  return {ops::permute(x, perm)};
}

std::vector<Tensor> transpose_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {ops::transpose(required_input(node, in, 0, "x"), node.attr_int("dim0"), node.attr_int("dim1"))};
}

// One axis of an ONNX Slice with a negative step, as an index_select of the chosen positions.
Tensor slice_backwards(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  int64_t size = x.shape()[dim];
  // ONNX clamping for negative steps: start in [0, size-1], end in [-1, size-1].
  start = start < 0 ? start + size : start;
  end = end < 0 ? end + size : end;
  start = std::clamp<int64_t>(start, 0, size - 1);
  end = std::clamp<int64_t>(end, -1, size - 1);
  std::vector<int64_t> idx;
  for (int64_t i = start; i > end; i += step) idx.push_back(i);
  return ops::index_select(x, dim, Tensor::from_vector(idx));
}

std::vector<Tensor> slice_kernel(const Node& node, const std::vector<Tensor>& in) {
  Tensor x = required_input(node, in, 0, "data");
  if (in.size() < 3) {  // attribute form
    return {ops::slice(x, node.attr_int("dim"), node.attr_int("start", 0),
                       node.attr_int("end", std::numeric_limits<int64_t>::max()), node.attr_int("step", 1))};
  }
  std::vector<int64_t> starts = int_values(in[1], node, "starts"), ends = int_values(in[2], node, "ends");
  if (starts.size() != ends.size()) kernel_error(node, "starts and ends differ in length");
  std::vector<int64_t> axes(starts.size()), steps(starts.size(), 1);
  std::iota(axes.begin(), axes.end(), 0);
  if (in.size() > 3 && in[3].defined()) axes = int_values(in[3], node, "axes");
  if (in.size() > 4 && in[4].defined()) steps = int_values(in[4], node, "steps");
  if (axes.size() != starts.size() || steps.size() != starts.size())
    kernel_error(node, "starts, ends, axes and steps must have one entry per sliced axis");
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t d = normalize_axis(axes[i], x.dim(), node);
    if (steps[i] == 0) kernel_error(node, "step 0");
    if (x.shape()[d] == 0) continue;
    x = steps[i] > 0 ? ops::slice(x, d, starts[i], ends[i], steps[i])
                     : slice_backwards(x, d, starts[i], ends[i], steps[i]);
  }
  return {x};
}

std::vector<Tensor> expand_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "x");
  std::vector<int64_t> target = int_values(required_input(node, in, 1, "shape"), node, "shape");
  size_t rank = std::max(target.size(), x.shape().size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t a = i + x.shape().size() >= rank ? x.shape()[i + x.shape().size() - rank] : 1;
    int64_t b = i + target.size() >= rank ? target[i + target.size() - rank] : 1;
    if (a != b && a != 1 && b != 1)
      kernel_error(node, detail::concat("cannot broadcast ", shape_str(x.shape()), " with ", shape_str(target)));
    out[i] = a == 1 ? b : a;
  }
  return {ops::contiguous(ops::expand(x, out))};
}

std::vector<Tensor> index_select_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "data");
  Tensor idx = required_input(node, in, 1, "indices");
  int64_t axis = normalize_axis(node.attr_int("axis", 0), x.dim(), node);
  if (!is_integral(idx.dtype())) kernel_error(node, "indices must be integers");
  std::vector<int64_t> flat = idx.to_vector<int64_t>();
  int64_t size = x.shape()[axis];
  for (int64_t& v : flat) {
    if (v < -size || v >= size)
      kernel_error(node, detail::concat("index ", v, " is out of range for a dim of size ", size));
    if (v < 0) v += size;
  }
  Tensor picked = ops::index_select(x, axis, Tensor::from_vector(flat));
  Shape shape(x.shape().begin(), x.shape().begin() + axis);
  shape.insert(shape.end(), idx.shape().begin(), idx.shape().end());
  shape.insert(shape.end(), x.shape().begin() + axis + 1, x.shape().end());
  return {ops::reshape(picked, shape)};
}

std::vector<Tensor> gather_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "data");
  const Tensor& idx = required_input(node, in, 1, "indices");
  int64_t axis = normalize_axis(node.attr_int("axis", 0), x.dim(), node);
  if (!is_integral(idx.dtype())) kernel_error(node, "indices must be integers");
  std::vector<int64_t> flat = idx.to_vector<int64_t>();
  int64_t size = x.shape()[axis];
  for (int64_t& v : flat) {
    if (v < -size || v >= size)
      kernel_error(node, detail::concat("index ", v, " is out of range for a dim of size ", size));
    if (v < 0) v += size;
  }
  return {ops::gather(x, axis, Tensor::from_vector(flat, idx.shape()))};
}

std::vector<Tensor> cat_kernel(const Node& node, const std::vector<Tensor>& in) {
  if (in.empty()) kernel_error(node, "needs at least one input");
  int64_t axis = normalize_axis(node.attr_int("axis", 0), in[0].dim(), node);
  if (in.size() == 1) return {ops::clone(in[0])};
  return {ops::cat(in, axis)};
}

std::vector<Tensor> stack_kernel(const Node& node, const std::vector<Tensor>& in) {
  if (in.empty()) kernel_error(node, "needs at least one input");
  return {ops::stack(in, normalize_axis(node.attr_int("axis", 0), in[0].dim() + 1, node))};
}

std::vector<Tensor> split_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "x");
  int64_t axis = normalize_axis(node.attr_int("axis", 0), x.dim(), node);
  auto n = static_cast<int64_t>(node.outputs.size());
  auto sizes = ints_from(node, in, 1, "sizes");
  std::vector<Tensor> parts;
  if (sizes) {
    if (static_cast<int64_t>(sizes->size()) != n) kernel_error(node, "split sizes do not match the output count");
    if (std::accumulate(sizes->begin(), sizes->end(), int64_t{0}) != x.shape()[axis])
      kernel_error(node, detail::concat("split sizes do not add up to ", x.shape()[axis]));
    parts = ops::split(x, *sizes, axis);
  } else {
    int64_t size = x.shape()[axis];
    int64_t chunk = (size + n - 1) / n;
    parts = ops::split(x, chunk, axis);
    if (static_cast<int64_t>(parts.size()) != n)
      kernel_error(node, detail::concat("cannot split a dim of size ", size, " into ", n, " parts"));
  }
  return parts;
}

std::vector<Tensor> pad_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {ops::pad(required_input(node, in, 0, "x"), node.attr_ints("pads"), node.attr_float("value", 0.0))};
}

std::vector<Tensor> topk_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "x");
  int64_t k = in.size() > 1 && in[1].defined() ? int_values(in[1], node, "k").at(0) : node.attr_int("k");
  int64_t axis = normalize_axis(node.attr_int("axis", -1), x.dim(), node);
  if (k < 0 || k > x.shape()[axis])
    kernel_error(node, detail::concat("k = ", k, " for a dim of size ", x.shape()[axis]));
  auto [values, indices] = ops::topk(x, k, axis, node.attr_int("largest", 1) != 0);
  return {values, indices};
}

}  // namespace

void register_shape_kernels(KernelTable& t) {
  t.add("reshape", reshape_kernel);
  t.add("flatten", flatten_kernel);
  t.add("squeeze", squeeze_kernel);
  t.add("unsqueeze", unsqueeze_kernel);
  t.add("permute", permute_kernel);
  t.add("transpose", transpose_kernel);
  t.add("slice", slice_kernel);
  t.add("expand", expand_kernel);
  t.add("index_select", index_select_kernel);
  t.add("gather", gather_kernel);
  t.add("cat", cat_kernel);
  t.add("stack", stack_kernel);
  t.add("split", split_kernel);
  t.add("pad", pad_kernel);
  t.add("topk", topk_kernel);
}

}  // namespace kiln::graph
