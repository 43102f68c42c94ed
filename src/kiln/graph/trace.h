// Define-and-run from define-by-run: runs a function eagerly with a TraceSink installed and
// records every traced op (ops/trace.h) into a Graph. Tensors the function reads that are not
// inputs (weights, buffers, tensors it makes, such as positions) become constants, named when
// the caller names them. The traced graph is checked against the eager outputs before return.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "kiln/graph/graph.h"

namespace kiln::graph {

struct TraceOptions {
  std::vector<std::string> input_names;   // default "input", "input_1", ...
  std::vector<std::string> output_names;  // default "output", "output_1", ...
  // Dim 0 of the inputs, and of every value computed from them that keeps that size there,
  // becomes the symbol `batch_symbol`; a reshape whose target keeps it records 0 ("copy the
  // input's dim 0", ONNX semantics) so the graph runs at any batch size.
  bool symbolic_batch = true;
  std::string batch_symbol = "N";
  double check_tolerance = 1e-5;  // max |graph - eager| / (1 + |eager|) accepted by the check
};

using TracedFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

// Throws ValueError when an op the function calls cannot be traced (an eager op without a trace
// hook leaves a tensor the graph cannot reach: reported as "output ... is not produced by traced
// ops") or when the graph's outputs differ from the eager ones.
Graph trace_function(const TracedFn& fn, const std::vector<Tensor>& example_inputs,
                     const std::vector<std::pair<std::string, Tensor>>& named_constants, const TraceOptions& opt = {});

}  // namespace kiln::graph
