#include "kiln/graph/compiled.h"

#include "kiln/graph/codegen.h"
#include "kiln/graph/fused_program.h"

namespace kiln::graph {

Compiled::Compiled(Graph g, const CompileOptions& options) : graph_(std::move(g)), options_(options) {
  nodes_before_ = graph_.nodes().size();
  if (options_.optimize) log_ = optimize(graph_, options_.passes);
  exec_ = std::make_unique<Executor>(graph_, /*prepare_constants=*/options_.optimize);
  // Generate and compile the fused kernels now rather than on the first run (a disk-cache hit
  // after the first time; the interpreter runs them when no compiler is available).
  for (const auto& n : graph_.nodes())
    if (n->op_name() == "fused_elementwise") codegen::find_or_compile(fused::parse(*n));
}

std::vector<Tensor> Compiled::run(const std::vector<Tensor>& inputs) {
  std::map<std::string, int64_t> symbols = bind_inputs(graph_, inputs);
  if (!options_.plan_memory) return exec_->run_checked(inputs, nullptr, nullptr);
  std::lock_guard<std::mutex> lock(mutex_);
  std::unique_ptr<Arena>& arena = arenas_[symbols];
  if (!arena) {
    arena = std::make_unique<Arena>();
    arena->plan = plan_memory(graph_, symbols);
    arena->bytes = ScratchBuffer<char>(arena->plan.arena_bytes);
  }
  return exec_->run_checked(inputs, &arena->plan, arena->bytes.data());
}

std::vector<RtValue> Compiled::run_values(const std::vector<RtValue>& inputs) {
  bool tensors_only = inputs.size() == graph_.inputs().size();
  for (const RtValue& v : inputs) tensors_only = tensors_only && v.is_tensor();
  for (const Value* v : graph_.inputs()) tensors_only = tensors_only && v->is_tensor();
  for (const Value* v : graph_.outputs()) tensors_only = tensors_only && v->is_tensor();
  if (tensors_only) {
    std::vector<Tensor> ts;
    for (const RtValue& v : inputs) ts.push_back(v.tensor);
    std::vector<RtValue> out;
    for (Tensor& t : run(ts)) out.emplace_back(std::move(t));
    return out;
  }
  return exec_->run_values(inputs);  // unplanned: sequences hold tensors past their last use
}

std::vector<Tensor> Compiled::run(const std::map<std::string, Tensor>& named_inputs) {
  std::vector<Tensor> ordered;
  for (const Value* v : graph_.inputs()) {
    auto it = named_inputs.find(v->name);
    KILN_CHECK(it != named_inputs.end(), "missing graph input '", v->name, "'");
    ordered.push_back(it->second);
  }
  KILN_CHECK(named_inputs.size() == ordered.size(), "the graph has ", ordered.size(), " input(s), got ",
             named_inputs.size(), " named inputs");
  return run(ordered);
}

}  // namespace kiln::graph
