// Graph kernels (being written).
#include "kiln/graph/kernels.h"

namespace kiln::graph {

void register_extra_kernels(KernelTable& t) { (void)t; }

}  // namespace kiln::graph
