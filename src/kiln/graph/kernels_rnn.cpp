// Graph kernels for the recurrent ops of ops/rnn_ops.h (ONNX RNN, GRU, LSTM).
#include "kiln/graph/kernels.h"

namespace kiln::graph {

void register_rnn_kernels(KernelTable&) {}

}  // namespace kiln::graph
