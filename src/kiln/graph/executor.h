// Runs a graph node by node on the kernel table (the interpreter). Inputs are checked against
// the graph's declared inputs; every intermediate is released after its last use, so peak
// memory is the live set, not the sum. The planned-arena executor (memory_plan.h) builds on it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kiln/graph/graph.h"
#include "kiln/graph/kernels.h"
#include "kiln/graph/memory_plan.h"

namespace kiln::graph {

class Executor {
 public:
  // Resolves every node's kernel; throws NotImplementedError naming the first node whose op has
  // no graph kernel.
  // prepare_constants: run the kernels' one-time preparation of constant inputs (kernels.h,
  // PreparedKernel) now, and use the prepared kernels on every run.
  explicit Executor(const Graph& graph, bool prepare_constants = false);

  // Inputs in the order of graph.inputs(). Throws ValueError naming the input for a wrong count,
  // dtype or shape (fixed dims must match; a symbol must have one size across all inputs).
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) const;
  std::vector<Tensor> run(const std::map<std::string, Tensor>& named_inputs) const;
  // With a memory plan (for the inputs' symbol bindings): intermediates are placed in `arena`
  // (plan.arena_bytes, 64-byte aligned) at the planned offsets. An output a kernel put anywhere
  // else in the arena (it returned a view the plan did not expect) is copied out, so a plan can
  // cost a copy but never correctness.
  std::vector<Tensor> run_planned(const std::vector<Tensor>& inputs, const MemoryPlan& plan, void* arena) const;
  // run_planned for inputs already checked with bind_inputs (graph::Compiled checks them once).
  std::vector<Tensor> run_checked(const std::vector<Tensor>& inputs, const MemoryPlan* plan, void* arena) const;

  // Any graph, including those whose inputs or outputs are sequences or optionals (run() and
  // run_checked() take and return tensors only and refuse such graphs, naming the value).
  // Inputs are checked as by bind_inputs, plus their kinds and sequence element dtypes.
  std::vector<RtValue> run_values(const std::vector<RtValue>& inputs) const;
  std::vector<RtValue> run_values_checked(const std::vector<RtValue>& inputs, const MemoryPlan* plan,
                                          void* arena) const;

  const Graph& graph() const { return graph_; }

 private:
  const Graph& graph_;
  std::vector<Tensor> call(size_t i, const Node& n, const std::vector<Tensor>& args) const;
  // The node loop, on values already placed in env (tensors) and venv (other kinds).
  void run_nodes(std::vector<Tensor>& env, std::vector<RtValue>& venv, const MemoryPlan* plan, void* arena) const;
  void run_value_node(size_t i, const Node& n, std::vector<Tensor>& env, std::vector<RtValue>& venv) const;
  void check_tensor_io() const {
    if (!non_tensor_io_.empty()) [[unlikely]]
      throw_non_tensor_io();
  }
  [[noreturn]] void throw_non_tensor_io() const;

  std::vector<KernelFn> kernels_;                 // per node
  std::vector<PreparedState> prepared_;           // per node; null: the plain kernel runs
  std::vector<const PreparedKernel*> prepared_fns_;
  // Per node: the value kernel for nodes that run on sequences/optionals (graph.h
  // runs_on_values), else null; such nodes skip the tensor path (and its arena offers).
  std::vector<ValueKernelFn> value_kernels_;
  std::vector<const PreparedValueKernel*> prepared_value_fns_;
  std::vector<std::vector<int64_t>> release_;     // per node: value ids whose last use it is
  size_t value_slots_ = 0;                        // 1 + the largest value id
  bool has_values_ = false;                       // some value is not a tensor
  std::string non_tensor_io_;                     // the first graph input/output that is not a tensor
};

// Checks `inputs` against the declared graph inputs (see Executor::run) and returns the bound
// size of every symbolic dimension.
std::map<std::string, int64_t> bind_inputs(const Graph& graph, const std::vector<Tensor>& inputs);
// The same for inputs of any kind: kinds must fit (an optional input takes none), sequence
// elements must have the declared dtype; symbols are bound from the tensor inputs.
std::map<std::string, int64_t> bind_value_inputs(const Graph& graph, const std::vector<RtValue>& inputs);

}  // namespace kiln::graph
