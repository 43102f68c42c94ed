#include "kiln/io/model_trace.h"

#include "kiln/core/error.h"

namespace kiln::io {

graph::Graph trace(nn::Module& module, const std::vector<Tensor>& example_inputs, const graph::TraceOptions& opt) {
  KILN_CHECK(example_inputs.size() == 1, "trace: modules take one input, got ", example_inputs.size());
  std::vector<std::pair<std::string, Tensor>> named = module.named_parameters();
  for (auto& b : module.named_buffers()) named.push_back(std::move(b));
  bool was_training = module.is_training();
  module.eval();
  struct Restore {
    nn::Module& m;
    bool training;
    ~Restore() { m.train(training); }
  } restore{module, was_training};
  return graph::trace_function(
      [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{module.forward(in[0])}; }, example_inputs,
      named, opt);
}

}  // namespace kiln::io
