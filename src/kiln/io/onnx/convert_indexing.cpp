// ONNX converters (being written).
#include "kiln/io/onnx/onnx_convert.h"

namespace kiln::io {

void register_indexing_converters(ConverterTable& t) { (void)t; }

}  // namespace kiln::io
