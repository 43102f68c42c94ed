// ONNX import: a ModelProto (opsets 7-17 of the default domain) becomes a graph::Graph of Kiln
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

constexpr int64_t kMinImportOpset = 7;
constexpr int64_t kMaxImportOpset = 17;

}  // namespace kiln::io
