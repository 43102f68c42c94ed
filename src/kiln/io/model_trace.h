// trace(module, example_inputs): captures a module's forward pass as a static graph (see
// graph/trace.h). The module runs in eval mode for the trace (its mode is restored after);
// parameters and buffers become constants named by their state-dict keys.
#pragma once

#include <vector>

#include "kiln/graph/trace.h"
#include "kiln/nn/module.h"

namespace kiln::io {

graph::Graph trace(nn::Module& module, const std::vector<Tensor>& example_inputs,
                   const graph::TraceOptions& opt = {});

}  // namespace kiln::io
