// Memory planning: buffers alive at the same time never overlap in the arena, the arena is
// smaller than the sum of the intermediates for a chain, views extend their source's lifetime,
// and running with the plan gives the same results as running without it.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/core/rng.h"
#include "kiln/graph/compiled.h"
#include "kiln/graph/executor.h"
#include "kiln/graph/memory_plan.h"

namespace kiln::graph {
namespace {

// x -> relu -> exp -> reshape (view) -> neg -> tanh -> add(., relu) -> output
Graph chain_graph() {
  Graph g;
  Value* x = g.add_input("x", DType::f32, {Dim::named("N"), Dim::fixed(64)});
  SymShape s{Dim::named("N"), Dim::fixed(64)};
  Value* a = g.add_op("relu", {x}, {}, DType::f32, s);
  Value* b = g.add_op("exp", {a}, {}, DType::f32, s);
  Value* c = g.add_op("reshape", {b}, {{"shape", std::vector<int64_t>{0, 8, 8}}}, DType::f32,
                      SymShape{Dim::named("N"), Dim::fixed(8), Dim::fixed(8)});
  Value* d = g.add_op("neg", {c}, {}, DType::f32, SymShape{Dim::named("N"), Dim::fixed(8), Dim::fixed(8)});
  Value* e = g.add_op("reshape", {d}, {{"shape", std::vector<int64_t>{0, 64}}}, DType::f32, s);
  Value* f = g.add_op("tanh", {e}, {}, DType::f32, s);
  Value* out = g.add_op("add", {f, a}, {}, DType::f32, s, "out");
  g.mark_output(out);
  return g;
}

TEST(MemoryPlan, LiveBuffersNeverOverlapAndReuseHappens) {
  Graph g = chain_graph();
  MemoryPlan plan = plan_memory(g, {{"N", 16}});
  for (size_t i = 0; i < plan.buffers.size(); ++i)
    for (size_t j = i + 1; j < plan.buffers.size(); ++j) {
      const PlannedBuffer& p = plan.buffers[i];
      const PlannedBuffer& q = plan.buffers[j];
      bool live_together = !(p.last < q.first || q.last < p.first);
      bool share_bytes = p.offset < q.offset + q.bytes && q.offset < p.offset + p.bytes;
      EXPECT_FALSE(live_together && share_bytes) << "buffers " << p.value_id << " and " << q.value_id;
    }
  // Lifetimes (node indices): relu [0, 6], exp [1, 3] (read through the first reshape by neg),
  // neg [3, 5] (read through the second reshape by tanh), tanh [5, 6]. A node's inputs and outputs
  // never share bytes, so only exp and tanh can share: 3 slots of 4 KiB for 4 values.
  EXPECT_EQ(plan.naive_bytes, 4u * 16 * 64 * 4);
  EXPECT_EQ(plan.arena_bytes, 3u * 16 * 64 * 4);
  EXPECT_EQ(plan.output_bytes, 16u * 64 * 4);
  EXPECT_EQ(plan.aliases.size(), 2u);  // the two reshapes
  EXPECT_EQ(plan.unplanned, 0);
}

TEST(MemoryPlan, PlannedRunEqualsInterpreterAtSeveralBatchSizes) {
  Graph reference = chain_graph();
  Compiled compiled(chain_graph(), CompileOptions{.optimize = false});
  Generator gen(5);
  for (int64_t n : {16, 3, 16}) {
    Tensor x = randn({n, 64}, gen);
    Tensor want = Executor(reference).run({x})[0];
    Tensor got = compiled.run({x})[0];
    EXPECT_EQ(got.to_vector<float>(), want.to_vector<float>()) << "N = " << n;
    EXPECT_TRUE(got.storage()->owns_data());  // outputs never live in the arena
  }
}

TEST(MemoryPlan, UnknownShapesAreLeftToTheAllocator) {
  Graph g;
  Value* x = g.add_input("x", DType::f32, {Dim::named("N")});
  Value* y = g.add_op("exp", {x}, {}, DType::f32);  // shape unknown
  Value* z = g.add_op("neg", {y}, {}, DType::f32, SymShape{Dim::named("N")}, "z");
  g.mark_output(z);
  MemoryPlan plan = plan_memory(g, {{"N", 4}});
  EXPECT_EQ(plan.unplanned, 1);
  EXPECT_TRUE(plan.buffers.empty());
}

}  // namespace
}  // namespace kiln::graph

namespace kiln::graph {
namespace {

// A view of a graph input lives in the caller's memory: neither planned nor counted.
TEST(MemoryPlan, ViewsOfGraphInputsAreNotPlanned) {
  Graph g;
  Value* x = g.add_input("x", DType::f32, {Dim::named("N"), Dim::fixed(4), Dim::fixed(4)});
  Value* flat = g.add_op("flatten", {x}, {{"start_dim", int64_t{1}}}, DType::f32,
                         SymShape{Dim::named("N"), Dim::fixed(16)});
  Value* y = g.add_op("exp", {flat}, {}, DType::f32, SymShape{Dim::named("N"), Dim::fixed(16)});
  g.mark_output(g.add_op("neg", {y}, {}, DType::f32, SymShape{Dim::named("N"), Dim::fixed(16)}, "out"));
  MemoryPlan plan = plan_memory(g, {{"N", 2}});
  EXPECT_TRUE(plan.aliases.count(flat->id));
  EXPECT_EQ(plan.naive_bytes, 2u * 16 * 4);  // only exp's output
  EXPECT_EQ(plan.buffers.size(), 1u);
  Tensor in = Tensor::ones({2, 4, 4});
  EXPECT_EQ(Compiled(std::move(g), CompileOptions{.optimize = false}).run({in})[0].to_vector<float>(),
            std::vector<float>(32, -std::exp(1.0f)));
}

}  // namespace
}  // namespace kiln::graph
