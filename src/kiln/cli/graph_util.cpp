#include "kiln/cli/graph_util.h"

#include <cstdio>
#include <map>

#include "kiln/core/error.h"
#include "kiln/core/rng.h"
#include "kiln/graph/graph.h"

namespace kiln::cli {

Tensor example_input(const nn::ModelSpec& spec, int64_t batch) {
  Generator gen(1234);
  if (spec.name == "gpt_char") return Tensor::zeros({batch, spec.context}, DType::i64);
  return randn({batch, spec.in_channels, spec.image_size, spec.image_size}, gen);
}

std::vector<Tensor> synthetic_inputs(const graph::Graph& g, int64_t batch) {
  Generator gen(99);
  std::vector<Tensor> out;
  for (const graph::Value* v : g.inputs()) {
    KILN_CHECK(v->shape.has_value(), "input '", v->name, "' has no declared shape; give inputs explicitly");
    Shape shape;
    for (const graph::Dim& d : *v->shape) shape.push_back(d.is_fixed() ? d.size : batch);
    if (is_floating(v->dtype)) out.push_back(to_dtype_raw(randn(shape, gen), v->dtype));
    else out.push_back(to_dtype_raw(uniform(shape, 0.0, 1.999, gen), v->dtype));
  }
  return out;
}

void print_compile_report(const graph::Compiled& compiled, const graph::Graph& imported, int64_t batch) {
  const graph::Graph& g = compiled.graph();
  std::map<std::string, int> histogram;
  for (const auto& n : g.nodes()) ++histogram[std::string(n->op_name())];
  std::printf("ops:");
  for (const auto& [op, count] : histogram) std::printf(" %s x%d", op.c_str(), count);
  std::printf("\n");
  int fused = 0;
  for (const auto& n : g.nodes()) {
    if (n->op_name() != "fused_elementwise") continue;
    std::printf("fused kernel %s (%zu inputs):\n", n->name.c_str(), n->inputs.size());
    if (n->has_attr("program"))
      for (const std::string& line : std::get<std::vector<std::string>>(n->attrs.at("program")))
        std::printf("    %s\n", line.c_str());
    ++fused;
  }
  if (fused == 0) std::printf("no fused elementwise kernels\n");
  std::map<std::string, int64_t> symbols;
  for (const graph::Value* v : g.inputs())
    if (v->shape)
      for (const graph::Dim& d : *v->shape)
        if (!d.is_fixed() && !d.symbol.empty()) symbols[d.symbol] = batch;
  graph::MemoryPlan plan = compiled.plan_for(symbols);
  graph::MemoryPlan naive = graph::plan_memory(imported, symbols);
  auto pct = [](size_t a, size_t b) { return b ? 100.0 * static_cast<double>(a) / static_cast<double>(b) : 0.0; };
  constexpr double kMiB = 1048576.0;
  std::printf("memory (batch %lld): arena %.3f MiB = %.1f%% of the %.3f MiB of intermediates the imported graph "
              "allocates one by one (%.1f%% of the optimised graph's %.3f MiB); outputs %.3f MiB; %d values sized at "
              "run time\n",
              static_cast<long long>(batch), plan.arena_bytes / kMiB, pct(plan.arena_bytes, naive.naive_bytes),
              naive.naive_bytes / kMiB, pct(plan.arena_bytes, plan.naive_bytes), plan.naive_bytes / kMiB,
              plan.output_bytes / kMiB, plan.unplanned + naive.unplanned);
}

}  // namespace kiln::cli
