// ONNX converters for the quant ops (being written).
#include "kiln/io/onnx/onnx_convert.h"

namespace kiln::io {

void register_quant_converters(ConverterTable& t) { (void)t; }

}  // namespace kiln::io
