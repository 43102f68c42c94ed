// ONNX import: a ModelProto (opsets 1-17 of the default domain) becomes a graph::Graph of Kiln
// ops. The model is checked with ONNX's checker and its shapes inferred with ONNX's shape
// inference first, so the graph's values carry dtypes and (symbolic) shapes.
#pragma once

#include <string>
#include <string_view>

#include "kiln/graph/graph.h"

namespace kiln::io {

// Reads and imports an .onnx file. Errors (IoError for unreadable or corrupt files, ValueError
// for an invalid model or contradicting shapes, NotImplementedError for an unsupported opset or
// operator — naming the op, its opset and the node) are one line each.
graph::Graph load_onnx(const std::string& path);
// The same from serialized bytes; `source` names them in errors.
graph::Graph import_onnx_bytes(std::string_view bytes, std::string_view source);

// Opsets before 7 are read with their differences where Kiln's converters know them (legacy
// broadcast with axis, Reshape's shape attribute, Softmax's 2-d coercion, attribute forms of
// Slice/Pad/Split/Squeeze); the conformance suite (pytorch-converted, opset 6) checks them.
constexpr int64_t kMinImportOpset = 1;
constexpr int64_t kMaxImportOpset = 17;

}  // namespace kiln::io
