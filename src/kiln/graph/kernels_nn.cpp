// Graph kernels for the nn ops.
#include "kiln/graph/kernels.h"

namespace kiln::graph {

void register_nn_kernels(KernelTable& t) { (void)t; }

}  // namespace kiln::graph
