// Helpers the graph commands share: example inputs for tracing, synthetic inputs for a graph,
// and the compile report (fused kernels, memory plan).
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/graph/compiled.h"
#include "kiln/nn/models.h"

namespace kiln::cli {

// A batch of the model's input: images (B, C, H, W) f32, or token ids (B, context) i64.
Tensor example_input(const nn::ModelSpec& spec, int64_t batch);

// One random tensor per graph input, every symbolic dim set to `batch`; integer inputs are
// drawn from {0, 1} (valid indices for any embedding).
std::vector<Tensor> synthetic_inputs(const graph::Graph& g, int64_t batch);

// Prints the op histogram, the fused kernels and the memory plan for a batch size; `imported` (the
// graph before optimisation) gives the naive total: every intermediate of the model as written.
void print_compile_report(const graph::Compiled& compiled, const graph::Graph& imported, int64_t batch);

}  // namespace kiln::cli
