// Importing the bodies of ONNX control-flow nodes (If's branches, Loop's and Scan's body): a
// GraphProto attribute becomes a graph::Graph owned by the node. ONNX bodies may read values of
// enclosing graphs by name; Kiln makes each such read explicit (graph.h, Node::subgraphs): an
// outer constant is copied into the body as a constant, any other outer value becomes an extra
// input of the node and of the body ("captured"). Defined in onnx_import.cpp, beside the graph
// conversion the bodies share with the main graph.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/io/onnx/onnx_convert.h"

namespace kiln::io {

// The Kiln kind, element dtype (when the proto gives one) and shape (tensors only) of an ONNX
// type. Maps, sparse tensors and nested sequences/optionals throw NotImplementedError naming
// `context`. Defined in onnx_import.cpp.
struct OnnxValueType {
  graph::ValueKind kind = graph::ValueKind::tensor;
  std::optional<DType> dtype;
  std::optional<graph::SymShape> shape;
};
OnnxValueType onnx_value_type(const ::onnx::TypeProto& type, std::string_view context);

// How a body input the proto leaves untyped is typed (a loop-carried value: as the node's input).
struct BodyInputType {
  DType dtype;
  graph::ValueKind kind = graph::ValueKind::tensor;
};

// One name a body reads from an enclosing graph, and the outer value it stands for.
struct OuterRead {
  std::string name;
  Value* value = nullptr;
};

// What `bodies` (and the bodies nested in them) read without defining it, resolved in ctx's
// scope, in first-read order, without repeated names. Throws naming the node when a name is
// defined nowhere. Constants are included (import_body copies them in).
std::vector<OuterRead> outer_reads(const ConvertContext& ctx, const std::vector<const ::onnx::GraphProto*>& bodies);

// The distinct non-constant values of `outer`: the control-flow node's captured inputs, in the
// order import_body gives the bodies' matching inputs.
std::vector<Value*> captured_inputs(const std::vector<OuterRead>& outer);

// Converts `body`: its declared inputs first (typed by the proto, else by input_types[i]; shape
// unknown where the proto says nothing), then one input per captured_inputs(outer). `label`
// names the body in errors ("body of node 'loop_1'").
std::shared_ptr<graph::Graph> import_body(const ConvertContext& ctx, const ::onnx::GraphProto& body,
                                          const std::vector<OuterRead>& outer,
                                          const std::vector<std::optional<BodyInputType>>& input_types,
                                          std::string_view label);

}  // namespace kiln::io
