#include "kiln/graph/executor.h"

#include <algorithm>
#include <unordered_map>

#include "kiln/core/error.h"
#include "kiln/core/grad_mode.h"
#include "kiln/core/placement.h"
#include "kiln/ops/elementwise.h"

namespace kiln::graph {

Executor::Executor(const Graph& graph, bool prepare_constants) : graph_(graph) {
  const KernelTable& table = kernel_table();
  const auto& nodes = graph.nodes();
  kernels_.reserve(nodes.size());
  for (const auto& n : nodes) {
    if (runs_on_values(*n)) {
      ValueKernelFn vfn = table.find_values(n->op_name());
      if (!vfn)
        throw NotImplementedError(detail::concat("graph: op '", n->op_name(), "' (node '", n->name,
                                                 "') has no kernel for sequence or optional values"));
      const PreparedValueKernel* pk = prepare_constants ? table.find_prepared_values(n->op_name()) : nullptr;
      kernels_.push_back(nullptr);
      prepared_.push_back(pk ? pk->prepare(*n) : nullptr);
      prepared_fns_.push_back(nullptr);
      value_kernels_.push_back(vfn);
      prepared_value_fns_.push_back(pk);
      continue;
    }
    value_kernels_.push_back(nullptr);
    prepared_value_fns_.push_back(nullptr);
    KernelFn fn = table.find(n->op_name());
    if (!fn)
      throw NotImplementedError(detail::concat("graph: no kernel for op '", n->op_name(), "' (node '", n->name, "')"));
    kernels_.push_back(fn);
    const PreparedKernel* pk = prepare_constants ? table.find_prepared(n->op_name()) : nullptr;
    prepared_.push_back(pk ? pk->prepare(*n) : nullptr);
    prepared_fns_.push_back(pk);
  }
  // Last use of every value read by a node; graph outputs are never released.
  std::unordered_map<int64_t, size_t> last_use;
  for (size_t i = 0; i < nodes.size(); ++i)
    for (const Value* in : nodes[i]->inputs)
      if (in && !in->is_constant()) last_use[in->id] = i;
  for (const Value* out : graph.outputs()) last_use.erase(out->id);
  release_.resize(nodes.size());
  for (const auto& v : graph.values()) {
    value_slots_ = std::max(value_slots_, static_cast<size_t>(v->id) + 1);
    has_values_ = has_values_ || !v->is_tensor();
  }
  for (const auto* list : {&graph.inputs(), &graph.outputs()})
    for (const Value* v : *list)
      if (!v->is_tensor() && non_tensor_io_.empty())
        non_tensor_io_ = detail::concat("'", v->name, "' is ", type_str(*v));
  for (const auto& [id, i] : last_use) release_[i].push_back(id);
  // Outputs nobody reads (a Dropout mask, a TopK value) are dropped right after their node.
  std::vector<int> uses = graph.use_counts();
  for (size_t i = 0; i < nodes.size(); ++i)
    for (const Value* out : nodes[i]->outputs)
      if (uses[static_cast<size_t>(out->id)] == 0) release_[i].push_back(out->id);
}

std::vector<Tensor> Executor::call(size_t i, const Node& n, const std::vector<Tensor>& args) const {
  if (prepared_[i]) return prepared_fns_[i]->run(n, args, prepared_[i].get());
  return kernels_[i](n, args);
}

namespace {

// Checks one tensor input against its declaration, binding the symbols of its shape.
void bind_tensor(const Value* v, const Tensor& t, std::map<std::string, int64_t>& symbols) {
  KILN_CHECK(t.defined(), "input '", v->name, "' is missing");
  KILN_CHECK_TYPE(t.dtype() == v->dtype, "input '", v->name, "' has dtype ", dtype_name(t.dtype()),
                  ", the graph expects ", dtype_name(v->dtype));
  if (!v->shape) return;
  {
    const SymShape& s = *v->shape;
    auto mismatch = [&] {
      return detail::concat("input '", v->name, "' has shape ", shape_str(t.shape()), ", the graph expects ",
                            sym_shape_str(s));
    };
    KILN_CHECK(t.dim() == static_cast<int64_t>(s.size()), mismatch());
    for (size_t d = 0; d < s.size(); ++d) {
      int64_t size = t.shape()[d];
      if (s[d].is_fixed()) {
        KILN_CHECK(size == s[d].size, mismatch());
      } else if (!s[d].symbol.empty()) {
        auto [it, fresh] = symbols.emplace(s[d].symbol, size);
        KILN_CHECK(fresh || it->second == size, mismatch(), " (", s[d].symbol, " is ", it->second,
                   " from an earlier input)");
      }
    }
  }
}

}  // namespace

void Executor::throw_non_tensor_io() const {
  throw ValueError(detail::concat("graph: input or output ", non_tensor_io_,
                                  ", not a tensor\nhelp: run the graph with Executor::run_values"));
}

std::map<std::string, int64_t> bind_inputs(const Graph& graph, const std::vector<Tensor>& inputs) {
  const auto& declared = graph.inputs();
  KILN_CHECK(inputs.size() == declared.size(), "graph expects ", declared.size(), " input(s), got ", inputs.size());
  std::map<std::string, int64_t> symbols;
  for (size_t i = 0; i < declared.size(); ++i) {
    KILN_CHECK(declared[i]->is_tensor(), "input '", declared[i]->name, "' is ", type_str(*declared[i]),
               ", not a tensor\nhelp: run the graph with Executor::run_values");
    bind_tensor(declared[i], inputs[i], symbols);
  }
  return symbols;
}

std::map<std::string, int64_t> bind_value_inputs(const Graph& graph, const std::vector<RtValue>& inputs) {
  const auto& declared = graph.inputs();
  KILN_CHECK(inputs.size() == declared.size(), "graph expects ", declared.size(), " input(s), got ", inputs.size());
  std::map<std::string, int64_t> symbols;
  for (size_t i = 0; i < declared.size(); ++i) {
    const Value* v = declared[i];
    const RtValue& x = inputs[i];
    KILN_CHECK_TYPE(kind_accepts(v->kind, x), "input '", v->name, "' is ", rt_value_str(x), ", the graph expects ",
                    type_str(*v));
    if (v->is_tensor()) bind_tensor(v, x.tensor, symbols);
    if (x.is_tensor() && !v->is_tensor())
      KILN_CHECK_TYPE(x.tensor.dtype() == v->dtype, "input '", v->name, "' has dtype ", dtype_name(x.tensor.dtype()),
                      ", the graph expects ", dtype_name(v->dtype));
    for (size_t e = 0; e < x.seq.size(); ++e)
      KILN_CHECK_TYPE(x.seq[e].defined() && x.seq[e].dtype() == v->dtype, "input '", v->name, "': element ", e, " is ",
                      x.seq[e].str(), ", the graph expects ", dtype_name(v->dtype), " elements");
  }
  return symbols;
}

std::vector<Tensor> Executor::run(const std::vector<Tensor>& inputs) const {
  check_tensor_io();
  bind_inputs(graph_, inputs);
  return run_checked(inputs, nullptr, nullptr);
}

std::vector<Tensor> Executor::run_planned(const std::vector<Tensor>& inputs, const MemoryPlan& plan,
                                          void* arena) const {
  bind_inputs(graph_, inputs);
  return run_checked(inputs, &plan, arena);
}

std::vector<Tensor> Executor::run_checked(const std::vector<Tensor>& inputs, const MemoryPlan* plan,
                                          void* arena) const {
  check_tensor_io();
  NoGradGuard no_grad;
  // Values by id: a flat table (ids are dense), cheaper than a map on small graphs at batch 1.
  std::vector<Tensor> env(value_slots_);
  std::vector<RtValue> venv(has_values_ ? value_slots_ : 0);  // sequences, optionals
  for (size_t i = 0; i < inputs.size(); ++i) env[static_cast<size_t>(graph_.inputs()[i]->id)] = inputs[i];
  run_nodes(env, venv, plan, arena);
  std::vector<Tensor> results;
  for (const Value* out : graph_.outputs())
    results.push_back(out->is_constant() ? out->constant : env[static_cast<size_t>(out->id)]);
  return results;
}

std::vector<RtValue> Executor::run_values(const std::vector<RtValue>& inputs) const {
  bind_value_inputs(graph_, inputs);
  return run_values_checked(inputs, nullptr, nullptr);
}

std::vector<RtValue> Executor::run_values_checked(const std::vector<RtValue>& inputs, const MemoryPlan* plan,
                                                  void* arena) const {
  NoGradGuard no_grad;
  std::vector<Tensor> env(value_slots_);
  std::vector<RtValue> venv(has_values_ ? value_slots_ : 0);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Value* v = graph_.inputs()[i];
    if (v->is_tensor()) env[static_cast<size_t>(v->id)] = inputs[i].tensor;
    else venv[static_cast<size_t>(v->id)] = inputs[i];
  }
  run_nodes(env, venv, plan, arena);
  std::vector<RtValue> results;
  for (const Value* out : graph_.outputs()) {
    if (out->is_constant()) results.emplace_back(out->constant);
    else if (out->is_tensor()) results.emplace_back(env[static_cast<size_t>(out->id)]);
    else results.push_back(venv[static_cast<size_t>(out->id)]);
  }
  return results;
}

void Executor::run_value_node(size_t i, const Node& n, std::vector<Tensor>& env, std::vector<RtValue>& venv) const {
  std::vector<RtValue> args;
  args.reserve(n.inputs.size());
  for (const Value* in : n.inputs) {
    if (!in) args.emplace_back();
    else if (in->is_constant()) args.emplace_back(in->constant);
    else if (in->is_tensor()) args.emplace_back(env[static_cast<size_t>(in->id)]);
    else args.push_back(venv[static_cast<size_t>(in->id)]);
  }
  std::vector<RtValue> outs = prepared_value_fns_[i] ? prepared_value_fns_[i]->run(n, args, prepared_[i].get())
                                                     : value_kernels_[i](n, args);
  KILN_ASSERT(outs.size() >= n.outputs.size(), "value kernel for ", n.op_name(), " returned ", outs.size(),
              " outputs, node '", n.name, "' has ", n.outputs.size());
  for (size_t k = 0; k < n.outputs.size(); ++k) {
    const Value* o = n.outputs[k];
    if (!kind_accepts(o->kind, outs[k]))
      kernel_error(n, detail::concat("output ", k, " (%", o->name, ") is ", rt_value_str(outs[k]), ", the graph expects ",
                                     type_str(*o)));
    if (o->is_tensor()) env[static_cast<size_t>(o->id)] = std::move(outs[k].tensor);
    else venv[static_cast<size_t>(o->id)] = std::move(outs[k]);
  }
  for (int64_t id : release_[i]) {
    env[static_cast<size_t>(id)] = Tensor();
    if (!venv.empty()) venv[static_cast<size_t>(id)] = RtValue();
  }
}

void Executor::run_nodes(std::vector<Tensor>& env, std::vector<RtValue>& venv, const MemoryPlan* plan_ptr,
                         void* arena) const {
  static const MemoryPlan kNoPlan;
  const MemoryPlan& plan = plan_ptr ? *plan_ptr : kNoPlan;
  if (!plan_ptr) arena = nullptr;
  char* arena_begin = static_cast<char*>(arena);
  char* arena_end = arena_begin + (arena ? plan.arena_bytes : 0);
  std::vector<PlacementOffer> offers;
  auto fetch = [&](const Value* v) -> Tensor {
    if (!v) return Tensor();
    if (v->is_constant()) return v->constant;
    const Tensor& t = env[static_cast<size_t>(v->id)];
    KILN_ASSERT(t.defined(), "graph executor: value %", v->name, " read before it was computed");
    return t;
  };
  const auto& nodes = graph_.nodes();
  std::vector<Tensor> args;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = *nodes[i];
    if (value_kernels_[i]) [[unlikely]] {
      run_value_node(i, n, env, venv);
      continue;
    }
    args.clear();
    for (const Value* in : n.inputs) args.push_back(fetch(in));
    offers.clear();
    for (const Value* out : n.outputs) {
      auto it = plan.buffer_of.find(out->id);
      if (arena && it != plan.buffer_of.end()) {
        const PlannedBuffer& b = plan.buffers[it->second];
        offers.push_back({arena_begin + b.offset, b.bytes});
      }
    }
    std::vector<Tensor> outs;
    if (offers.empty()) {
      outs = call(i, n, args);
    } else {
      PlacementScope placement(offers);
      outs = call(i, n, args);
    }
    if (arena) {
      for (size_t k = 0; k < n.outputs.size() && k < outs.size(); ++k) {
        const Tensor& t = outs[k];
        if (!t.defined() || t.storage()->owns_data()) continue;
        char* p = static_cast<char*>(t.storage()->data());
        if (p < arena_begin || p >= arena_end || plan.aliases.count(n.outputs[k]->id)) continue;
        auto it = plan.buffer_of.find(n.outputs[k]->id);
        if (it == plan.buffer_of.end() || p != arena_begin + plan.buffers[it->second].offset) outs[k] = ops::clone(t);
      }
    }
    KILN_ASSERT(outs.size() >= n.outputs.size(), "kernel for ", n.op_name(), " returned ", outs.size(),
                " outputs, node '", n.name, "' has ", n.outputs.size());
    for (size_t k = 0; k < n.outputs.size(); ++k) env[static_cast<size_t>(n.outputs[k]->id)] = std::move(outs[k]);
    for (int64_t id : release_[i]) env[static_cast<size_t>(id)] = Tensor();
  }
}

std::vector<Tensor> Executor::run(const std::map<std::string, Tensor>& named_inputs) const {
  std::vector<Tensor> ordered;
  for (const Value* v : graph_.inputs()) {
    auto it = named_inputs.find(v->name);
    KILN_CHECK(it != named_inputs.end(), "missing graph input '", v->name, "'");
    ordered.push_back(it->second);
  }
  for (const auto& [name, t] : named_inputs) {
    bool known = false;
    for (const Value* v : graph_.inputs()) known = known || v->name == name;
    KILN_CHECK(known, "the graph has no input named '", name, "'");
  }
  return run(ordered);
}

}  // namespace kiln::graph
