// kiln::graph::Compiled: a graph optimised by the passes (passes.h), run by the executor with
// its intermediates in one planned arena (memory_plan.h). Plans and arenas are made per binding
// of the symbolic dims (batch sizes) on first use and kept. run() is safe to call from several
// threads (calls take turns on the arena).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/core/allocator.h"
#include "kiln/graph/executor.h"
#include "kiln/graph/graph.h"
#include "kiln/graph/memory_plan.h"
#include "kiln/graph/passes.h"

namespace kiln::graph {

struct CompileOptions {
  bool optimize = true;  // false: run the graph as given (the interpreter oracle)
  PassOptions passes = {};
  bool plan_memory = true;
};

class Compiled {
 public:
  explicit Compiled(Graph g, const CompileOptions& options = {});

  std::vector<Tensor> run(const std::vector<Tensor>& inputs);
  std::vector<Tensor> run(const std::map<std::string, Tensor>& named_inputs);
  // Any graph, including one whose inputs or outputs are sequences or optionals (kernels.h
  // RtValue); tensor-only graphs run planned as run() does.
  std::vector<RtValue> run_values(const std::vector<RtValue>& inputs);

  const Graph& graph() const { return graph_; }
  const std::vector<PassLogEntry>& pass_log() const { return log_; }
  size_t nodes_before() const { return nodes_before_; }
  // The plan for a binding of the symbolic dims (e.g. {"N": 64}).
  MemoryPlan plan_for(const std::map<std::string, int64_t>& symbols) const { return plan_memory(graph_, symbols); }

 private:
  struct Arena {
    MemoryPlan plan;
    ScratchBuffer<char> bytes;
  };
  Graph graph_;
  CompileOptions options_;
  std::vector<PassLogEntry> log_;
  size_t nodes_before_ = 0;
  std::unique_ptr<Executor> exec_;
  std::mutex mutex_;
  std::map<std::map<std::string, int64_t>, std::unique_ptr<Arena>> arenas_;
};

}  // namespace kiln::graph
