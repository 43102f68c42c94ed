// Graph kernels for sequences and optionals (ONNX Sequence*, SplitToSequence, ConcatFromSequence,
// Optional*): value kernels (kernels.h, RtValue) run only for nodes that runs_on_values() picks.
// Sequences are immutable values: an op returns a new list sharing the element tensors. Graph
// form (S a sequence, O an optional, T a tensor; positions are int32/int64 scalars, negative
// counts from the back):
//   sequence_empty () -> S                        the value's dtype is the element dtype
//   sequence_construct (T x n) -> S               all of one dtype
//   sequence_insert (S, T, position?) -> S        position in [-n, n], default: at the back
//   sequence_at (S, position) -> T                position in [-n, n-1]
//   sequence_erase (S, position?) -> S            position in [-n, n-1], default: the last
//   sequence_length (S) -> i64[]
//   split_to_sequence (T, split?) -> S            attrs axis=0, keepdims=1; split absent: pieces of
//        1 (squeezed unless keepdims), a scalar: pieces of that size (the last may be smaller),
//        1-d: the piece sizes (summing to the axis' size)
//   concat_from_sequence (S) -> T                 attrs axis, new_axis=0 (1: stack on a new axis)
//   optional_construct (x?) -> O                  no input: the empty optional
//   optional_has_element (x?) -> b8[]             false for none or an absent input
//   optional_get_element (O) -> T or S            none is an error naming the node
//   clone (x) -> x                                 on a sequence or optional (Identity, outputs)
// sequence_map (a body per element) is in kernels_control.cpp, beside the other bodies.
#include "kiln/core/error.h"
#include "kiln/graph/kernels.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::graph {

namespace {

using Values = std::vector<RtValue>;

const std::vector<Tensor>& seq_arg(const Node& n, const Values& in, size_t i, std::string_view what) {
  if (i >= in.size() || !in[i].is_sequence())
    kernel_error(n, detail::concat("input ", i, " (", what, ") must be a sequence, got ",
                                   i < in.size() ? rt_value_str(in[i]) : std::string("nothing")));
  return in[i].seq;
}

const Tensor& tensor_arg(const Node& n, const Values& in, size_t i, std::string_view what) {
  if (i >= in.size() || !in[i].is_tensor())
    kernel_error(n, detail::concat("input ", i, " (", what, ") must be a tensor, got ",
                                   i < in.size() ? rt_value_str(in[i]) : std::string("nothing")));
  return in[i].tensor;
}

// A position into a sequence of `len` elements: in [-len, len-1], or [-len, len] when `inserting`.
size_t position(const Node& n, const Tensor& p, size_t len, bool inserting) {
  if (!is_integral(p.dtype()) || p.numel() != 1)
    kernel_error(n, detail::concat("position must be an integer scalar, got ", p.str()));
  const auto size = static_cast<int64_t>(len);
  const int64_t raw = p.to_vector<int64_t>()[0];
  const int64_t hi = inserting ? size : size - 1;
  if (raw < -size || raw > hi)
    kernel_error(n, detail::concat("position ", raw, " is out of range for a sequence of ", len, " (allowed [", -size,
                                   ", ", hi, "])"));
  return static_cast<size_t>(raw < 0 ? raw + size : raw);
}

void check_dtype(const Node& n, const std::vector<Tensor>& seq, const Tensor& t) {
  if (!seq.empty() && seq[0].dtype() != t.dtype())
    kernel_error(n, detail::concat("a ", dtype_name(t.dtype()), " tensor cannot join a sequence of ",
                                   dtype_name(seq[0].dtype()), " tensors"));
}

Values sequence_empty(const Node&, const Values&) { return {RtValue::sequence({})}; }

Values sequence_construct(const Node& n, const Values& in) {
  std::vector<Tensor> seq;
  for (size_t i = 0; i < in.size(); ++i) {
    const Tensor& t = tensor_arg(n, in, i, "element");
    check_dtype(n, seq, t);
    seq.push_back(t);
  }
  return {RtValue::sequence(std::move(seq))};
}

Values sequence_insert(const Node& n, const Values& in) {
  std::vector<Tensor> seq = seq_arg(n, in, 0, "sequence");
  const Tensor& t = tensor_arg(n, in, 1, "tensor");
  check_dtype(n, seq, t);
  size_t at = seq.size();
  if (in.size() > 2 && !in[2].is_none()) at = position(n, tensor_arg(n, in, 2, "position"), seq.size(), true);
  seq.insert(seq.begin() + static_cast<std::ptrdiff_t>(at), t);
  return {RtValue::sequence(std::move(seq))};
}

Values sequence_at(const Node& n, const Values& in) {
  const std::vector<Tensor>& seq = seq_arg(n, in, 0, "sequence");
  return {RtValue(seq[position(n, tensor_arg(n, in, 1, "position"), seq.size(), false)])};
}

Values sequence_erase(const Node& n, const Values& in) {
  std::vector<Tensor> seq = seq_arg(n, in, 0, "sequence");
  if (seq.empty()) kernel_error(n, "cannot erase from an empty sequence");
  size_t at = seq.size() - 1;
  if (in.size() > 1 && !in[1].is_none()) at = position(n, tensor_arg(n, in, 1, "position"), seq.size(), false);
  seq.erase(seq.begin() + static_cast<std::ptrdiff_t>(at));
  return {RtValue::sequence(std::move(seq))};
}

Values sequence_length(const Node& n, const Values& in) {
  const auto len = static_cast<double>(seq_arg(n, in, 0, "sequence").size());
  return {RtValue(Tensor::scalar(len, DType::i64))};
}

Values split_to_sequence(const Node& n, const Values& in) {
  const Tensor& x = tensor_arg(n, in, 0, "input");
  if (x.dim() == 0) kernel_error(n, "cannot split a 0-d tensor");
  const int64_t axis = normalize_axis(n.attr_int("axis", 0), x.dim(), n);
  const int64_t size = x.shape()[static_cast<size_t>(axis)];
  std::vector<Tensor> parts;
  if (in.size() < 2 || in[1].is_none()) {
    parts = ops::split(x, 1, axis);
    if (n.attr_int("keepdims", 1) == 0)
      for (Tensor& p : parts) p = ops::squeeze(p, axis);
  } else {
    const Tensor& split = tensor_arg(n, in, 1, "split");
    std::vector<int64_t> sizes = int_values(split, n, "split");
    if (split.dim() == 0) {
      if (sizes[0] <= 0) kernel_error(n, detail::concat("split must be positive, got ", sizes[0]));
      parts = ops::split(x, sizes[0], axis);
    } else {
      int64_t total = 0;
      for (int64_t s : sizes) {
        if (s < 0) kernel_error(n, detail::concat("split sizes must not be negative, got ", s));
        total += s;
      }
      if (total != size)
        kernel_error(n, detail::concat("split sizes sum to ", total, ", axis ", axis, " of ", x.str(), " has ", size));
      parts = ops::split(x, sizes, axis);
    }
  }
  return {RtValue::sequence(std::move(parts))};
}

Values concat_from_sequence(const Node& n, const Values& in) {
  const std::vector<Tensor>& seq = seq_arg(n, in, 0, "sequence");
  if (seq.empty()) kernel_error(n, "cannot concatenate an empty sequence");
  const bool new_axis = n.attr_int("new_axis", 0) != 0;
  const int64_t rank = seq[0].dim() + (new_axis ? 1 : 0);
  const int64_t axis = normalize_axis(n.attr_int("axis"), rank, n);
  return {RtValue(new_axis ? ops::stack(seq, axis) : ops::cat(seq, axis))};
}

Values optional_construct(const Node&, const Values& in) { return {in.empty() ? RtValue() : in[0]}; }

Values optional_has_element(const Node&, const Values& in) {
  const bool has = !in.empty() && !in[0].is_none();
  return {RtValue(Tensor::scalar(has ? 1.0 : 0.0, DType::b8))};
}

Values optional_get_element(const Node& n, const Values& in) {
  if (in.empty() || in[0].is_none()) kernel_error(n, "the optional is empty");
  return {in[0]};
}

Values clone_value(const Node&, const Values& in) {
  if (!in.empty() && in[0].is_tensor()) return {RtValue(ops::clone(in[0].tensor))};
  return {in.empty() ? RtValue() : in[0]};  // sequences are immutable: sharing is a copy
}

}  // namespace

void register_sequence_kernels(KernelTable& t) {
  t.add_values("sequence_empty", sequence_empty);
  t.add_values("sequence_construct", sequence_construct);
  t.add_values("sequence_insert", sequence_insert);
  t.add_values("sequence_at", sequence_at);
  t.add_values("sequence_erase", sequence_erase);
  t.add_values("sequence_length", sequence_length);
  t.add_values("split_to_sequence", split_to_sequence);
  t.add_values("concat_from_sequence", concat_from_sequence);
  t.add_values("optional_construct", optional_construct);
  t.add_values("optional_has_element", optional_has_element);
  t.add_values("optional_get_element", optional_get_element);
  t.add_values("clone", clone_value);
}

}  // namespace kiln::graph
