// ONNX converters for the inference ops (being written).
#include "kiln/io/onnx/onnx_convert.h"

namespace kiln::io {

void register_inference_converters(ConverterTable& t) { (void)t; }

}  // namespace kiln::io
