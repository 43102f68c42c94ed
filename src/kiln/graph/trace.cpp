#include "kiln/graph/trace.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "kiln/core/error.h"
#include "kiln/core/grad_mode.h"
#include "kiln/graph/executor.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/trace.h"

namespace kiln::graph {

namespace {

Attr to_attr(const ops::TraceAttr& a) {
  return std::visit([](const auto& v) -> Attr { return v; }, a);
}

class GraphTracer : public ops::TraceSink {
 public:
  GraphTracer(Graph& g, const std::vector<std::pair<std::string, Tensor>>& named, int64_t batch, std::string symbol)
      : g_(g), batch_(batch), symbol_(std::move(symbol)) {
    for (const auto& [name, t] : named)
      if (t.defined()) names_.emplace(t.impl_ptr().get(), name);
  }

  void bind_input(const Tensor& t, Value* v) {
    values_[t.impl_ptr().get()] = v;
    keep_.push_back(t);
    if (batch_ >= 0) batched_.insert(v);
  }

  Value* find(const Tensor& t) const {
    auto it = values_.find(t.impl_ptr().get());
    return it == values_.end() ? nullptr : it->second;
  }

  void on_op(std::string_view op, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
             const ops::TraceAttrs& attrs) override {
    std::vector<Value*> ins;
    bool from_batch = false;
    for (const Tensor& t : inputs) {
      Value* v = value_of(t);
      ins.push_back(v);
      from_batch = from_batch || (v && batched_.count(v));
    }
    // An op that returned its input unchanged (a no-op reshape, eval-mode dropout) adds nothing.
    if (outputs.size() == 1) {
      for (size_t i = 0; i < inputs.size(); ++i)
        if (inputs[i].defined() && outputs[0].same(inputs[i])) return;
    }
    std::map<std::string, Attr, std::less<>> a;
    for (const auto& [key, value] : attrs) a[key] = to_attr(value);
    if (op == "batch_norm" || op == "dropout") {
      KILN_CHECK(std::get<int64_t>(a["training"]) == 0, "trace: ", op, " in training mode; call module.eval() first");
      a.erase("training");
    }
    if (op == "reshape" && !ins.empty() && batched_.count(ins[0])) {
      auto& shape = std::get<std::vector<int64_t>>(a["shape"]);
      if (!shape.empty() && shape[0] == batch_) shape[0] = 0;  // copy the (symbolic) batch dim
    }
    std::vector<Value*> outs;
    for (const Tensor& t : outputs) {
      SymShape shape = fixed_shape(t.shape());
      bool batched = from_batch && t.dim() > 0 && t.shape()[0] == batch_;
      if (batched) shape[0] = Dim::named(symbol_);
      Value* v = g_.add_value({}, t.dtype(), shape);
      if (batched) batched_.insert(v);
      values_[t.impl_ptr().get()] = v;
      keep_.push_back(t);
      outs.push_back(v);
    }
    g_.add_node(op, ins, outs, std::move(a));
  }

 private:
  Value* value_of(const Tensor& t) {
    if (!t.defined()) return nullptr;
    if (Value* v = find(t)) return v;
    auto it = names_.find(t.impl_ptr().get());
    std::string name = it == names_.end() ? std::string() : it->second;
    Value* v = g_.add_constant(g_.find_value(name) ? std::string() : name, ops::contiguous(t.detach()));
    values_[t.impl_ptr().get()] = v;
    keep_.push_back(t);  // keeps the address from being reused by a later tensor
    return v;
  }

  Graph& g_;
  int64_t batch_;
  std::string symbol_;
  std::unordered_map<const TensorImpl*, std::string> names_;
  std::unordered_map<const TensorImpl*, Value*> values_;
  std::unordered_set<const Value*> batched_;
  std::vector<Tensor> keep_;
};

std::string default_name(const std::vector<std::string>& names, size_t i, const char* stem) {
  if (i < names.size()) return names[i];
  return i == 0 ? std::string(stem) : std::string(stem) + "_" + std::to_string(i);
}

void check_against_eager(const Graph& g, const std::vector<Tensor>& inputs, const std::vector<Tensor>& eager,
                         double tol) {
  std::vector<Tensor> got = Executor(g).run(inputs);
  for (size_t k = 0; k < eager.size(); ++k) {
    KILN_CHECK(got[k].shape() == eager[k].shape(), "trace: graph output ", k, " has shape ", shape_str(got[k].shape()),
               ", the eager output ", shape_str(eager[k].shape()));
    if (!is_floating(eager[k].dtype())) continue;
    std::vector<double> a = got[k].to_vector<double>(), b = eager[k].to_vector<double>();
    for (size_t i = 0; i < a.size(); ++i)
      KILN_CHECK(std::fabs(a[i] - b[i]) <= tol * (1 + std::fabs(b[i])), "trace: graph output ", k, " element ", i,
                 " is ", a[i], ", the eager forward gives ", b[i], " (an op without a trace hook?)");
  }
}

}  // namespace

Graph trace_function(const TracedFn& fn, const std::vector<Tensor>& example_inputs,
                     const std::vector<std::pair<std::string, Tensor>>& named_constants, const TraceOptions& opt) {
  KILN_CHECK(!example_inputs.empty(), "trace: needs at least one example input");
  Graph g;
  g.producer = "kiln trace";
  int64_t batch = opt.symbolic_batch && example_inputs[0].dim() > 0 ? example_inputs[0].shape()[0] : -1;
  GraphTracer tracer(g, named_constants, batch, opt.batch_symbol);
  for (size_t i = 0; i < example_inputs.size(); ++i) {
    const Tensor& t = example_inputs[i];
    SymShape shape = fixed_shape(t.shape());
    if (batch >= 0) {
      KILN_CHECK(t.dim() > 0 && t.shape()[0] == batch, "trace: with a symbolic batch every input needs the same dim 0");
      shape[0] = Dim::named(opt.batch_symbol);
    }
    tracer.bind_input(t, g.add_input(default_name(opt.input_names, i, "input"), t.dtype(), shape));
  }
  std::vector<Tensor> eager;
  {
    NoGradGuard no_grad;
    ops::TraceScope scope(&tracer);
    eager = fn(example_inputs);
  }
  for (size_t k = 0; k < eager.size(); ++k) {
    Value* v = tracer.find(eager[k]);
    KILN_CHECK(v != nullptr, "trace: output ", k, " is not produced by traced ops");
    // Outputs get their public names; an output that is an input, a constant or already an
    // output gets a copy.
    std::string name = default_name(opt.output_names, k, "output");
    bool taken = std::find(g.outputs().begin(), g.outputs().end(), v) != g.outputs().end();
    if (!v->producer || taken || g.find_value(name)) {
      Value* copy = g.add_value(g.find_value(name) ? std::string() : name, v->dtype, v->shape);
      g.add_node("clone", {v}, {copy});
      v = copy;
    } else {
      g.rename(v, name);
    }
    g.mark_output(v);
  }
  g.remove_unused();
  verify(g, "trace");
  check_against_eager(g, example_inputs, eager, opt.check_tolerance);
  return g;
}

}  // namespace kiln::graph
