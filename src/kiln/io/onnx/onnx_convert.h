// How ONNX nodes become graph nodes: one converter per ONNX op type, given a ConvertContext for
// the node being imported. Converters read ONNX attributes and inputs, honour the model's opset
// (ctx.opset) where an op's semantics changed between versions, and emit Kiln ops in their graph
// form (see graph/kernels_*.cpp). Each convert_<topic>.cpp registers its converters.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <onnx/onnx_pb.h>

#include "kiln/graph/graph.h"

namespace kiln::io {

using graph::Attr;
using graph::Value;
using Attrs = std::map<std::string, Attr, std::less<>>;

class ConvertContext {
 public:
  ConvertContext(graph::Graph& g, int64_t opset, const ::onnx::NodeProto& node,
                 const std::map<std::string, Value*, std::less<>>& values,
                 const std::map<std::string, const ::onnx::ValueInfoProto*, std::less<>>& infos);

  graph::Graph& g;
  const int64_t opset;
  const ::onnx::NodeProto& node;

  // ---- inputs
  size_t num_inputs() const { return static_cast<size_t>(node.input_size()); }
  size_t num_outputs() const { return static_cast<size_t>(node.output_size()); }
  // Input i, or nullptr when it is absent (past the end, or an empty name).
  Value* in(size_t i) const;
  Value* required_in(size_t i, std::string_view what) const;  // throws naming the node when absent
  // The value of input i when it is a constant (initializer, Constant node, folded value).
  std::optional<Tensor> const_in(size_t i) const;
  std::optional<std::vector<int64_t>> const_ints(size_t i) const;  // a constant integer input
  const std::map<std::string, Value*, std::less<>>& scope() const { return values_; }  // by ONNX name, so far

  // ---- attributes (ONNX AttributeProto by name)
  bool has_attr(std::string_view name) const { return find_attr(name) != nullptr; }
  int64_t attr_int(std::string_view name, int64_t fallback) const;
  double attr_float(std::string_view name, double fallback) const;
  std::string attr_string(std::string_view name, std::string_view fallback) const;
  std::vector<int64_t> attr_ints(std::string_view name, std::vector<int64_t> fallback = {}) const;
  std::vector<double> attr_floats(std::string_view name, std::vector<double> fallback = {}) const;
  std::optional<Tensor> attr_tensor(std::string_view name) const;
  // Every ONNX attribute of the node as a graph attribute of the same name (ints, floats,
  // strings, tensors and their lists); for ops whose graph form uses ONNX's attribute names.
  Attrs all_attrs() const;
  const ::onnx::AttributeProto* find_attr(std::string_view name) const;

  // ---- emitting
  // A node whose outputs are the ONNX node's outputs (named as in the model, with the dtype and
  // shape that shape inference gave; `dtype` when inference said nothing, else input 0's dtype).
  graph::Node* emit(std::string_view op, std::vector<Value*> inputs, Attrs attrs = {},
                    std::optional<DType> dtype = std::nullopt);
  // An intermediate value (unnamed, shape unknown).
  Value* temp(std::string_view op, std::vector<Value*> inputs, Attrs attrs, DType dtype);
  Value* constant(const Tensor& t);
  Value* int_constant(const std::vector<int64_t>& values);  // 1-d i64
  // Makes the ONNX output `k` an alias of `v` (Identity-like ops emit no node).
  void alias_output(size_t k, Value* v);

  // Output k's dtype per shape inference, if known.
  std::optional<DType> output_dtype(size_t k) const;
  // Throws NotImplementedError "ONNX <Op> (opset N) node 'name': <what>".
  [[noreturn]] void unsupported(std::string_view what) const;
  // Throws ValueError naming the node.
  [[noreturn]] void invalid(std::string_view what) const;

  // Set by emit/alias: the values now standing for the ONNX outputs.
  std::vector<std::pair<std::string, Value*>> produced;

 private:
  const std::map<std::string, Value*, std::less<>>& values_;
  const std::map<std::string, const ::onnx::ValueInfoProto*, std::less<>>& infos_;
};

using Converter = void (*)(ConvertContext& ctx);

// The converter for an ONNX op whose Kiln graph op takes the same inputs and attributes.
template <const char* kKilnOp>
void passthrough(ConvertContext& ctx) {
  std::vector<Value*> inputs;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) inputs.push_back(ctx.in(i));
  while (!inputs.empty() && !inputs.back()) inputs.pop_back();
  ctx.emit(kKilnOp, inputs, ctx.all_attrs());
}

class ConverterTable {
 public:
  void add(std::string_view op_type, Converter fn) { fns_[std::string(op_type)] = fn; }
  Converter find(std::string_view op_type) const {
    auto it = fns_.find(op_type);
    return it == fns_.end() ? nullptr : it->second;
  }
  std::vector<std::string> op_types() const;

 private:
  std::map<std::string, Converter, std::less<>> fns_;
};

const ConverterTable& converter_table();

void register_elementwise_converters(ConverterTable& t);
void register_shape_converters(ConverterTable& t);
void register_nn_converters(ConverterTable& t);
void register_reduce_converters(ConverterTable& t);
void register_inference_converters(ConverterTable& t);  // erf, tile, range, einsum, ... (inference_ops)
void register_quant_converters(ConverterTable& t);      // QuantizeLinear, QLinearConv, ... and ConvTranspose, Resize
void register_extra_converters(ConverterTable& t);      // inference_extra.h ops, the ONNX losses
void register_indexing_converters(ConverterTable& t);   // indexing_extra.h ops
void register_rnn_converters(ConverterTable& t);        // RNN, GRU, LSTM (rnn_ops.h)
void register_control_converters(ConverterTable& t);    // If, Loop, Scan (bodies: onnx_subgraph.h)
void register_sequence_converters(ConverterTable& t);   // Sequence*, SplitToSequence, ConcatFromSequence, Optional*
void register_signal_converters(ConverterTable& t);     // windows, MelWeightMatrix, DFT, STFT (signal_ops.h)
void register_training_converters(ConverterTable& t);   // ai.onnx.preview.training: Adagrad, Momentum, Adam
void register_vision_converters(ConverterTable& t);     // GridSample, RoiAlign, NonMaxSuppression, MaxUnpool
void register_random_converters(ConverterTable& t);     // Bernoulli

// ONNX shape (TypeProto tensor shape) -> symbolic shape; nullopt when the rank is unknown.
std::optional<graph::SymShape> sym_shape_from_onnx(const ::onnx::ValueInfoProto& info);

}  // namespace kiln::io
