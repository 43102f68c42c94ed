// ONNX export: a graph of Kiln ops (traced from a module, or imported and optimised) written as
// an ONNX model of opset 17 that other runtimes read. Ops without an ONNX counterpart are
// decomposed (GELU into Erf/Tanh arithmetic, attention into MatMul/Softmax with a causal mask);
// an op that cannot be expressed is a NotImplementedError naming it.
#pragma once

#include <string>

#include <onnx/onnx_pb.h>

#include "kiln/graph/graph.h"

namespace kiln::io {

constexpr int64_t kExportOpset = 17;

::onnx::ModelProto export_onnx(const graph::Graph& g);
// Exports, checks the model with ONNX's checker, and writes it atomically.
void save_onnx(const graph::Graph& g, const std::string& path);

}  // namespace kiln::io
