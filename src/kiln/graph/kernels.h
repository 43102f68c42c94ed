// The executor's kernel table: for each registry op that can appear in a graph, a function that
// computes the node's outputs from its input tensors and attributes. Graph kernels are thin: they
// read attributes, then call the ops layer (which validates shapes and names itself in errors).
//
// Graph form of the ops (what importers and tracing must emit) is documented next to each
// kernel, in kernels_<topic>.cpp. Conventions shared by all kernels:
//   - an absent optional input arrives as an undefined Tensor;
//   - "dims"/"axes" attributes may be negative (count from the end);
//   - where ONNX passes a parameter as a tensor input (Reshape's shape, Slice's starts, Clip's
//     bounds, ...), the graph op takes it as that input too, read at run time, so dynamic
//     shapes work; a constant input is folded by the constant-folding pass like any other.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/core/tensor.h"
#include "kiln/graph/graph.h"

namespace kiln::graph {

using KernelFn = std::vector<Tensor> (*)(const Node& node, const std::vector<Tensor>& inputs);

// A value at run time of any kind (graph.h ValueKind): a tensor, a sequence of tensors, or none
// (an empty optional, or an absent input). An optional that holds something is just that tensor
// or sequence. Only the nodes that runs_on_values() selects see these; every other kernel keeps
// the plain tensor signature above.
struct RtValue {
  enum class Kind : uint8_t { none, tensor, sequence };
  Kind kind = Kind::none;
  Tensor tensor;             // kind tensor
  std::vector<Tensor> seq;   // kind sequence (elements of one dtype, any shapes)

  RtValue() = default;
  explicit RtValue(Tensor t) : kind(t.defined() ? Kind::tensor : Kind::none), tensor(std::move(t)) {}
  static RtValue sequence(std::vector<Tensor> elems) {
    RtValue v;
    v.kind = Kind::sequence;
    v.seq = std::move(elems);
    return v;
  }
  bool is_none() const { return kind == Kind::none; }
  bool is_tensor() const { return kind == Kind::tensor; }
  bool is_sequence() const { return kind == Kind::sequence; }
};
std::string rt_value_str(const RtValue& v);  // "tensor f32[2, 3]", "sequence of 3", "none"
// Whether a run-time value may stand for a value of kind `k` (an optional takes none too).
bool kind_accepts(ValueKind k, const RtValue& v);

// The kernels of nodes that take or return sequences or optionals (graph.h runs_on_values): the
// sequence_* and optional_* ops, and clone/if_else/loop where they carry such values.
using ValueKernelFn = std::vector<RtValue> (*)(const Node& node, const std::vector<RtValue>& inputs);

// Work a kernel can do once per node instead of on every run, from the node's constant inputs
// (a compiled graph packs each constant Linear weight for the GEMM once). `prepare` runs when a
// compiling executor is built and returns null where it does not apply (weight not constant,
// not f32); the executor then hands the state to `run` on every call, in place of the plain
// kernel. The state is immutable, so concurrent runs may share it.
using PreparedState = std::shared_ptr<const void>;
struct PreparedKernel {
  PreparedState (*prepare)(const Node& node);
  std::vector<Tensor> (*run)(const Node& node, const std::vector<Tensor>& inputs, const void* state);
};
struct PreparedValueKernel {
  PreparedState (*prepare)(const Node& node);
  std::vector<RtValue> (*run)(const Node& node, const std::vector<RtValue>& inputs, const void* state);
};

class KernelTable {
 public:
  void add(std::string_view op, KernelFn fn);  // op must be in the ops registry
  KernelFn find(std::string_view op) const;    // nullptr when the op has no graph kernel
  void add_prepared(std::string_view op, PreparedKernel k);  // op must already have a plain kernel
  const PreparedKernel* find_prepared(std::string_view op) const;
  // Value kernels (op must be in the ops registry); an op may have both forms.
  void add_values(std::string_view op, ValueKernelFn fn);
  ValueKernelFn find_values(std::string_view op) const;  // nullptr when the op has none
  void add_prepared_values(std::string_view op, PreparedValueKernel k);  // needs a value kernel
  const PreparedValueKernel* find_prepared_values(std::string_view op) const;
  std::vector<std::string> ops() const;  // ops with a plain or a value kernel

 private:
  std::map<std::string, KernelFn, std::less<>> fns_;
  std::map<std::string, PreparedKernel, std::less<>> prepared_;
  std::map<std::string, ValueKernelFn, std::less<>> value_fns_;
  std::map<std::string, PreparedValueKernel, std::less<>> prepared_values_;
};

// Built once, from every register_*_kernels function below.
const KernelTable& kernel_table();

// One per kernels_<topic>.cpp file. Adding a topic: write the file, declare its function here,
// call it from kernel_table() in kernels.cpp.
void register_elementwise_kernels(KernelTable& t);
void register_shape_kernels(KernelTable& t);
void register_nn_kernels(KernelTable& t);
void register_reduce_kernels(KernelTable& t);
void register_inference_kernels(KernelTable& t);  // the ops that exist for imported graphs
void register_quant_kernels(KernelTable& t);
void register_extra_kernels(KernelTable& t);     // inference_extra.h: trig, trilu, losses, ...
void register_indexing_kernels(KernelTable& t);  // indexing_extra.h: scatter/gather families, ...
void register_rnn_kernels(KernelTable& t);         // rnn_ops.h: ONNX RNN, GRU, LSTM
void register_spatial_nd_kernels(KernelTable& t);  // spatial_nd.h: 3-d conv/pool, dilated and indexed max pool
void register_control_kernels(KernelTable& t);  // if_else, loop, scan: bodies run by nested executors
void register_fused_kernels(KernelTable& t);     // fused_elementwise (fused_program.h)
void register_sequence_kernels(KernelTable& t);  // sequence_*, optional_*, clone on values
void register_signal_kernels(KernelTable& t);    // signal_ops.h: windows, mel matrix, DFT, STFT
void register_training_kernels(KernelTable& t);  // training_ops.h: Adagrad, Momentum, Adam steps
void register_vision_kernels(KernelTable& t);    // vision_ops.h: GridSample, RoiAlign, NMS, MaxUnpool
void register_random_kernels(KernelTable& t);    // bernoulli (NumPy-compatible stream, numpy_random.h)

// Helpers for kernels.
// The values of a 1-d (or scalar) integer tensor, e.g. Reshape's shape or Slice's starts.
std::vector<int64_t> int_values(const Tensor& t, const Node& node, std::string_view what);
// A scalar read from a one-element tensor as double.
double scalar_value(const Tensor& t, const Node& node, std::string_view what);
// A 0/1 flag attribute (ONNX stores them as ints); anything else throws naming the node.
bool flag_attr(const Node& node, std::string_view key);
// Normalises a possibly negative axis against rank; throws naming the node when out of range.
int64_t normalize_axis(int64_t axis, int64_t rank, const Node& node);
// Input i, which must be present (ValueError naming the node and `what` otherwise).
const Tensor& required_input(const Node& node, const std::vector<Tensor>& inputs, size_t i, std::string_view what);
// Input i, or an undefined tensor when it is absent.
inline Tensor optional_input(const std::vector<Tensor>& inputs, size_t i) {
  return i < inputs.size() ? inputs[i] : Tensor();
}
// Error for a node whose inputs are not what its kernel accepts.
[[noreturn]] void kernel_error(const Node& node, std::string_view message);

}  // namespace kiln::graph
