// Graph kernels for the N-d convolution and pooling ops of ops/spatial_nd.h.
#include "kiln/graph/kernels.h"

namespace kiln::graph {

void register_spatial_nd_kernels(KernelTable&) {}

}  // namespace kiln::graph
