#include "kiln/graph/kernels.h"

#include <algorithm>
#include <set>

#include "kiln/core/error.h"

namespace kiln::graph {

void KernelTable::add(std::string_view op, KernelFn fn) {
  KILN_ASSERT(ops::find_op(op) != nullptr, "graph kernel for '", op, "', which is not in ops.def");
  fns_[std::string(op)] = fn;
}

KernelFn KernelTable::find(std::string_view op) const {
  auto it = fns_.find(op);
  return it == fns_.end() ? nullptr : it->second;
}

void KernelTable::add_prepared(std::string_view op, PreparedKernel k) {
  KILN_ASSERT(find(op) != nullptr, "prepared kernel for '", op, "', which has no plain kernel");
  prepared_[std::string(op)] = k;
}

const PreparedKernel* KernelTable::find_prepared(std::string_view op) const {
  auto it = prepared_.find(op);
  return it == prepared_.end() ? nullptr : &it->second;
}

void KernelTable::add_values(std::string_view op, ValueKernelFn fn) {
  KILN_ASSERT(ops::find_op(op) != nullptr, "graph value kernel for '", op, "', which is not in ops.def");
  value_fns_[std::string(op)] = fn;
}

ValueKernelFn KernelTable::find_values(std::string_view op) const {
  auto it = value_fns_.find(op);
  return it == value_fns_.end() ? nullptr : it->second;
}

void KernelTable::add_prepared_values(std::string_view op, PreparedValueKernel k) {
  KILN_ASSERT(find_values(op) != nullptr, "prepared value kernel for '", op, "', which has no value kernel");
  prepared_values_[std::string(op)] = k;
}

const PreparedValueKernel* KernelTable::find_prepared_values(std::string_view op) const {
  auto it = prepared_values_.find(op);
  return it == prepared_values_.end() ? nullptr : &it->second;
}

std::vector<std::string> KernelTable::ops() const {
  std::set<std::string> names;
  for (const auto& [name, fn] : fns_) names.insert(name);
  for (const auto& [name, fn] : value_fns_) names.insert(name);
  return {names.begin(), names.end()};
}

std::string rt_value_str(const RtValue& v) {
  switch (v.kind) {
    case RtValue::Kind::none: return "none";
    case RtValue::Kind::tensor: return "tensor " + v.tensor.str();
    case RtValue::Kind::sequence: return detail::concat("sequence of ", v.seq.size());
  }
  return "?";
}

bool kind_accepts(ValueKind k, const RtValue& v) {
  switch (k) {
    case ValueKind::tensor: return v.is_tensor();
    case ValueKind::sequence: return v.is_sequence();
    case ValueKind::optional_tensor: return !v.is_sequence();
    case ValueKind::optional_sequence: return !v.is_tensor();
  }
  return false;
}

const KernelTable& kernel_table() {
  static const KernelTable table = [] {
    KernelTable t;
    register_elementwise_kernels(t);
    register_shape_kernels(t);
    register_nn_kernels(t);
    register_reduce_kernels(t);
    register_inference_kernels(t);
    register_quant_kernels(t);
    register_extra_kernels(t);
    register_indexing_kernels(t);
    register_rnn_kernels(t);
    register_spatial_nd_kernels(t);
    register_control_kernels(t);
    register_fused_kernels(t);
    register_sequence_kernels(t);
    register_signal_kernels(t);
    register_training_kernels(t);
    register_vision_kernels(t);
    register_random_kernels(t);
    return t;
  }();
  return table;
}

[[noreturn]] void kernel_error(const Node& node, std::string_view message) {
  throw ValueError(detail::concat("node '", node.name, "' (", node.op_name(), "): ", message));
}

const Tensor& required_input(const Node& node, const std::vector<Tensor>& inputs, size_t i, std::string_view what) {
  if (i >= inputs.size() || !inputs[i].defined())
    kernel_error(node, detail::concat("input ", i, " (", what, ") is missing"));
  return inputs[i];
}

std::vector<int64_t> int_values(const Tensor& t, const Node& node, std::string_view what) {
  if (!t.defined()) kernel_error(node, detail::concat(what, " is missing"));
  if (!is_integral(t.dtype()) || t.dim() > 1)
    kernel_error(node, detail::concat(what, " must be a 1-d integer tensor, got ", t.str()));
  return t.to_vector<int64_t>();
}

double scalar_value(const Tensor& t, const Node& node, std::string_view what) {
  if (!t.defined()) kernel_error(node, detail::concat(what, " is missing"));
  if (t.numel() != 1) kernel_error(node, detail::concat(what, " must have one element, got ", t.str()));
  return t.item();
}

bool flag_attr(const Node& node, std::string_view key) {
  int64_t v = node.attr_int(key, 0);
  if (v != 0 && v != 1) kernel_error(node, detail::concat("attribute ", key, " must be 0 or 1, got ", v));
  return v == 1;
}

int64_t normalize_axis(int64_t axis, int64_t rank, const Node& node) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= std::max<int64_t>(rank, 1))
    kernel_error(node, detail::concat("axis ", axis, " is out of range for rank ", rank));
  return a;
}

}  // namespace kiln::graph
