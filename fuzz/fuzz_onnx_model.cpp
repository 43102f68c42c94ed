// libFuzzer target: arbitrary bytes as a serialized ONNX model, through the whole importer
// (protobuf parse, ONNX checker, shape inference, conversion to a Kiln graph). A kiln::Error is
// the expected answer to bad input; a crash, an ASan report, another exception, or an imported
// graph that fails Kiln's own verifier is a bug.
#include <cstdint>
#include <string_view>

#include "kiln/graph/graph.h"
#include "kiln/io/onnx/onnx_import.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::graph::Graph g;
  try {
    g = kiln::io::import_onnx_bytes(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.onnx");
  } catch (const kiln::Error&) {
    return 0;
  }
  kiln::graph::verify(g, "fuzz.onnx (imported)");  // throws, uncaught, if the importer built a bad graph
  return 0;
}
