// ONNX's ai.onnx.preview.training operators (Adagrad, Momentum, Adam), keyed "<domain>.<op type>"
// (onnx_import.cpp looks up non-default domains that way); their graph ops are in
// ops/training_ops.h (graph form in graph/kernels_training.cpp), with ONNX's inputs and attributes.
#include "kiln/io/onnx/onnx_convert.h"

namespace kiln::io {

namespace {

constexpr char kAdagrad[] = "adagrad", kMomentum[] = "momentum", kAdam[] = "adam";

}  // namespace

void register_training_converters(ConverterTable& t) {
  t.add("ai.onnx.preview.training.Adagrad", passthrough<kAdagrad>);
  t.add("ai.onnx.preview.training.Momentum", passthrough<kMomentum>);
  t.add("ai.onnx.preview.training.Adam", passthrough<kAdam>);
}

}  // namespace kiln::io
