// Tests of control flow in the graph IR (if_else, loop, scan; kernels_control.cpp): graphs built
// in code, each result checked against plain loops written here. Every graph also runs compiled
// (optimised, memory-planned, bodies prepared once) and must give the same numbers.
#include <gtest/gtest.h>

#include <vector>

#include "kiln/core/error.h"
#include "kiln/graph/compiled.h"
#include "kiln/graph/executor.h"
#include "kiln/graph/passes.h"

namespace kiln::graph {
namespace {

using Attrs = std::map<std::string, Attr, std::less<>>;

Tensor vec(std::vector<float> v, Shape s) { return Tensor::from_vector<float>(v, s); }
Tensor i64(int64_t v) { return Tensor::scalar(static_cast<double>(v), DType::i64); }
Tensor flag(bool v) { return Tensor::scalar(v ? 1.0 : 0.0, DType::b8); }

void expect_values(const Tensor& got, const std::vector<float>& want, const Shape& shape, const std::string& what) {
  ASSERT_EQ(got.shape(), shape) << what;
  std::vector<float> g = got.to_vector<float>();
  ASSERT_EQ(g.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(g[i], want[i], 1e-5 * (1 + std::abs(want[i]))) << what << " [" << i << "]";
}

// Runs g on the interpreter and compiled (g is consumed); both results.
std::pair<std::vector<Tensor>, std::vector<Tensor>> run_both(Graph g, const std::vector<Tensor>& inputs) {
  verify(g, "test graph");
  std::vector<Tensor> plain = Executor(g).run(inputs);
  Compiled c(std::move(g));
  std::vector<Tensor> compiled = c.run(inputs);
  return {plain, compiled};
}

// Loop body: (i, cond, s (3), p (3), x (3) captured) -> (cond, s + x, p * x, s + x, p * x).
std::shared_ptr<Graph> sum_product_body() {
  auto b = std::make_shared<Graph>();
  b->add_input("i", DType::i64, {});
  Value* c = b->add_input("cond", DType::b8, {});
  Value* s = b->add_input("s", DType::f32, fixed_shape({3}));
  Value* p = b->add_input("p", DType::f32, fixed_shape({3}));
  Value* x = b->add_input("x", DType::f32, fixed_shape({3}));
  Value* s2 = b->add_op("add", {s, x}, {}, DType::f32, fixed_shape({3}));
  Value* p2 = b->add_op("mul", {p, x}, {}, DType::f32, fixed_shape({3}));
  b->mark_output(b->add_op("clone", {c}, {}, DType::b8, SymShape{}));
  b->mark_output(s2);
  b->mark_output(p2);
  b->mark_output(b->add_op("clone", {s2}, {}, DType::f32, fixed_shape({3})));
  b->mark_output(b->add_op("clone", {p2}, {}, DType::f32, fixed_shape({3})));
  return b;
}

TEST(ControlFlow, LoopRunningSumAndProductWithScanOutputs) {
  Graph g;
  Value* x = g.add_input("x", DType::f32, fixed_shape({3}));
  Value* m = g.add_input("m", DType::i64, {});
  // x, defined in the main graph, is read by the body: an explicit captured input.
  std::vector<Value*> outs;
  for (const char* name : {"s", "p", "s_all", "p_all"}) outs.push_back(g.add_value(name, DType::f32));
  Node* n = g.add_node("loop", {m, nullptr, g.add_constant("s0", Tensor::zeros({3})), g.add_constant("p0", Tensor::ones({3})), x},
                       outs, {{"num_captured", int64_t{1}}});
  n->subgraphs["body"] = sum_product_body();
  for (Value* v : outs) g.mark_output(v);
  const std::vector<float> xv = {1.5f, -2.0f, 0.5f};
  const int64_t trips = 4;
  // Reference: the recurrences by hand.
  std::vector<float> s(3, 0.0f), p(3, 1.0f), s_all, p_all;
  for (int64_t i = 0; i < trips; ++i) {
    for (size_t j = 0; j < 3; ++j) s[j] += xv[j], p[j] *= xv[j];
    s_all.insert(s_all.end(), s.begin(), s.end());
    p_all.insert(p_all.end(), p.begin(), p.end());
  }
  auto [plain, compiled] = run_both(std::move(g), {vec(xv, {3}), i64(trips)});
  for (const auto* r : {&plain, &compiled}) {
    expect_values((*r)[0], s, {3}, "s");
    expect_values((*r)[1], p, {3}, "p");
    expect_values((*r)[2], s_all, {trips, 3}, "scan of s");
    expect_values((*r)[3], p_all, {trips, 3}, "scan of p");
  }
}

// Body: (i, cond, s) -> (s + 1.5 < 10, s + 1.5, s + 1.5): stops once the sum reaches 10.
std::shared_ptr<Graph> counting_body() {
  auto b = std::make_shared<Graph>();
  b->add_input("i", DType::i64, {});
  b->add_input("cond", DType::b8, {});
  Value* s = b->add_input("s", DType::f32, {});
  Value* s2 = b->add_op("add", {s, b->add_constant("step", Tensor::scalar(1.5))}, {}, DType::f32, SymShape{});
  b->mark_output(b->add_op("lt", {s2, b->add_constant("limit", Tensor::scalar(10.0))}, {}, DType::b8, SymShape{}));
  b->mark_output(s2);
  b->mark_output(b->add_op("clone", {s2}, {}, DType::f32, SymShape{}));
  return b;
}

Graph counting_loop(bool with_m) {
  Graph g;
  Value* m = with_m ? g.add_input("m", DType::i64, {}) : nullptr;
  Value* c = g.add_input("c", DType::b8, {});
  Value* s0 = g.add_input("s0", DType::f32, {});
  Value* s = g.add_value("s", DType::f32, SymShape{});
  Value* all = g.add_value("all", DType::f32);
  g.add_node("loop", {m, c, s0}, {s, all})->subgraphs["body"] = counting_body();
  g.mark_output(s);
  g.mark_output(all);
  return g;
}

// The reference: while (cond && i < m) s += 1.5, cond = s < 10.
std::vector<float> counting_reference(bool cond, int64_t m, float s) {
  std::vector<float> all;
  for (int64_t i = 0; cond && (m < 0 || i < m); ++i) {
    s += 1.5f;
    cond = s < 10.0f;
    all.push_back(s);
  }
  return all;
}

TEST(ControlFlow, LoopEarlyExitWithoutTripCount) {
  std::vector<float> want = counting_reference(true, -1, 0.0f);
  ASSERT_EQ(want.size(), 7u);
  auto [plain, compiled] = run_both(counting_loop(false), {flag(true), Tensor::scalar(0.0)});
  for (const auto* r : {&plain, &compiled}) {
    expect_values((*r)[0], {want.back()}, {}, "final s");
    expect_values((*r)[1], want, {7}, "scan");
  }
}

TEST(ControlFlow, LoopTripCountAndConditionTogether) {
  for (int64_t m : {0, 3, 100}) {
    std::vector<float> want = counting_reference(true, m, 2.0f);
    auto [plain, compiled] = run_both(counting_loop(true), {i64(m), flag(true), Tensor::scalar(2.0)});
    for (const auto* r : {&plain, &compiled}) {
      expect_values((*r)[0], {want.empty() ? 2.0f : want.back()}, {}, "final s");
      expect_values((*r)[1], want, {static_cast<int64_t>(want.size())}, "scan");  // m = 0: shape [0]
    }
  }
  // A false condition runs no iteration: the carried value passes through.
  auto [plain, compiled] = run_both(counting_loop(false), {flag(false), Tensor::scalar(4.0)});
  expect_values(plain[0], {4.0f}, {}, "s");
  expect_values(plain[1], {}, {0}, "empty scan");
}

TEST(ControlFlow, LoopWithNeitherTripCountNorConditionIsAnError) {
  Graph g;
  Value* s0 = g.add_input("s0", DType::f32, {});
  Value* s = g.add_value("s", DType::f32, SymShape{});
  Value* all = g.add_value("all", DType::f32);
  g.add_node("loop", {nullptr, nullptr, s0}, {s, all})->subgraphs["body"] = counting_body();
  g.mark_output(s);
  EXPECT_THROW(Executor(g).run({Tensor::scalar(0.0)}), ValueError);
}

// if_else(c, x): then 2 * x (2, 3), else the row sums of x (2): shapes differ per branch.
Graph if_graph() {
  Graph g;
  Value* c = g.add_input("c", DType::b8, {});
  Value* x = g.add_input("x", DType::f32, fixed_shape({2, 3}));
  auto then_b = std::make_shared<Graph>();
  Value* tx = then_b->add_input("x", DType::f32, fixed_shape({2, 3}));
  then_b->mark_output(then_b->add_op("mul", {tx, then_b->add_constant("two", Tensor::scalar(2.0))}, {}, DType::f32));
  auto else_b = std::make_shared<Graph>();
  Value* ex = else_b->add_input("x", DType::f32, fixed_shape({2, 3}));
  else_b->mark_output(else_b->add_op("sum", {ex}, {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t{0}}}, DType::f32));
  Value* y = g.add_value("y", DType::f32);
  Node* n = g.add_node("if_else", {c, x}, {y}, {{"num_captured", int64_t{1}}});
  n->subgraphs["then_branch"] = then_b;
  n->subgraphs["else_branch"] = else_b;
  g.mark_output(y);
  return g;
}

TEST(ControlFlow, IfChoosesABranchAtRunTime) {
  std::vector<float> xv = {1, 2, 3, -4, 5, 0.5f};
  std::vector<float> twice, rows = {0, 0};
  for (size_t i = 0; i < xv.size(); ++i) twice.push_back(2 * xv[i]), rows[i / 3] += xv[i];
  for (bool c : {true, false}) {
    auto [plain, compiled] = run_both(if_graph(), {flag(c), vec(xv, {2, 3})});
    for (const auto* r : {&plain, &compiled}) {
      if (c) expect_values((*r)[0], twice, {2, 3}, "then");
      else expect_values((*r)[0], rows, {2}, "else");
    }
  }
}

// scan over X (2, 4) along axis 1, backwards: state s (2) accumulates the columns; outputs the
// running state stacked on axis 1 (2, 4) and 2 * column stacked on axis 0 in reverse (4, 2).
TEST(ControlFlow, ScanReverseAlongNonZeroAxes) {
  auto body = std::make_shared<Graph>();
  Value* s = body->add_input("s", DType::f32, fixed_shape({2}));
  Value* col = body->add_input("col", DType::f32, fixed_shape({2}));
  Value* s2 = body->add_op("add", {s, col}, {}, DType::f32, fixed_shape({2}));
  body->mark_output(s2);
  body->mark_output(body->add_op("clone", {s2}, {}, DType::f32, fixed_shape({2})));
  body->mark_output(body->add_op("mul", {col, body->add_constant("two", Tensor::scalar(2.0))}, {}, DType::f32,
                                 fixed_shape({2})));
  Graph g;
  Value* s0 = g.add_input("s0", DType::f32, fixed_shape({2}));
  Value* x = g.add_input("x", DType::f32, fixed_shape({2, 4}));
  std::vector<Value*> outs = {g.add_value("s", DType::f32), g.add_value("run", DType::f32), g.add_value("twice", DType::f32)};
  Node* n = g.add_node("scan", {s0, x}, outs,
                       {{"num_scan_inputs", int64_t{1}}, {"scan_input_axes", std::vector<int64_t>{-1}},
                        {"scan_input_directions", std::vector<int64_t>{1}},
                        {"scan_output_axes", std::vector<int64_t>{1, 0}},
                        {"scan_output_directions", std::vector<int64_t>{0, 1}}});
  n->subgraphs["body"] = body;
  for (Value* v : outs) g.mark_output(v);

  std::vector<float> xv = {1, 2, 3, 4, 10, 20, 30, 40}, s0v = {0.5f, -1};
  // Reference: step t reads column 3 - t; run[:, t] = state after step t; twice's rows are in
  // reverse step order, so twice[r] = 2 * column r.
  std::vector<float> state = s0v, run(8), twice(8);
  for (int t = 0; t < 4; ++t) {
    int c = 3 - t;
    for (int r = 0; r < 2; ++r) {
      state[r] += xv[r * 4 + c];
      run[r * 4 + t] = state[r];
      twice[c * 2 + r] = 2 * xv[r * 4 + c];
    }
  }
  auto [plain, compiled] = run_both(std::move(g), {vec(s0v, {2}), vec(xv, {2, 4})});
  for (const auto* r : {&plain, &compiled}) {
    expect_values((*r)[0], state, {2}, "final state");
    expect_values((*r)[1], run, {2, 4}, "running state");
    expect_values((*r)[2], twice, {4, 2}, "reversed output");
  }
}

// Scan-8 form: a batch axis on everything, sequence_lens per entry, zeros past an entry's end.
TEST(ControlFlow, BatchedScanWithSequenceLengths) {
  auto body = std::make_shared<Graph>();
  Value* s = body->add_input("s", DType::f32, fixed_shape({1}));
  Value* e = body->add_input("e", DType::f32, fixed_shape({1}));
  Value* s2 = body->add_op("add", {s, e}, {}, DType::f32, fixed_shape({1}));
  body->mark_output(s2);
  body->mark_output(body->add_op("clone", {s2}, {}, DType::f32, fixed_shape({1})));
  Graph g;
  Value* lens = g.add_input("lens", DType::i64, fixed_shape({2}));
  Value* s0 = g.add_input("s0", DType::f32, fixed_shape({2, 1}));
  Value* x = g.add_input("x", DType::f32, fixed_shape({2, 3, 1}));
  std::vector<Value*> outs = {g.add_value("s", DType::f32), g.add_value("y", DType::f32)};
  Node* n = g.add_node("scan", {lens, s0, x}, outs,
                       {{"num_scan_inputs", int64_t{1}}, {"batched", int64_t{1}}, {"directions", std::vector<int64_t>{1}}});
  n->subgraphs["body"] = body;
  for (Value* v : outs) g.mark_output(v);
  // Entry 0: 3 steps over 1, 2, 3 backwards from 0 -> 3, 5, 6. Entry 1: 2 steps over 10, 20
  // backwards from 1 -> 21, 31, then a zero.
  auto [plain, compiled] = run_both(std::move(g), {Tensor::from_vector<int64_t>({3, 2}, {2}), vec({0, 1}, {2, 1}),
                                                   vec({1, 2, 3, 10, 20, 99}, {2, 3, 1})});
  for (const auto* r : {&plain, &compiled}) {
    expect_values((*r)[0], {6, 31}, {2, 1}, "final state");
    expect_values((*r)[1], {3, 5, 6, 21, 31, 0}, {2, 3, 1}, "scan output");
  }
}

// if_else(c, x) whose then-branch runs loop(3 trips, s0 = x, captured x): s += x, so 4x; the
// else-branch is -x. x is captured twice: by the if, then by the loop inside it.
TEST(ControlFlow, LoopNestedInIf) {
  auto body = std::make_shared<Graph>();
  body->add_input("i", DType::i64, {});
  Value* bc = body->add_input("cond", DType::b8, {});
  Value* bs = body->add_input("s", DType::f32, fixed_shape({2}));
  Value* bx = body->add_input("x", DType::f32, fixed_shape({2}));
  body->mark_output(body->add_op("clone", {bc}, {}, DType::b8, SymShape{}));
  body->mark_output(body->add_op("add", {bs, bx}, {}, DType::f32, fixed_shape({2})));

  auto then_b = std::make_shared<Graph>();
  Value* tx = then_b->add_input("x", DType::f32, fixed_shape({2}));
  Value* ts = then_b->add_value("s", DType::f32, fixed_shape({2}));
  then_b->add_node("loop", {then_b->add_constant("m", i64(3)), nullptr, tx, tx}, {ts}, {{"num_captured", int64_t{1}}})
      ->subgraphs["body"] = body;
  then_b->mark_output(ts);
  auto else_b = std::make_shared<Graph>();
  Value* ex = else_b->add_input("x", DType::f32, fixed_shape({2}));
  else_b->mark_output(else_b->add_op("mul", {ex, else_b->add_constant("m1", Tensor::scalar(-1.0))}, {}, DType::f32));

  Graph g;
  Value* c = g.add_input("c", DType::b8, {});
  Value* x = g.add_input("x", DType::f32, fixed_shape({2}));
  Value* y = g.add_value("y", DType::f32);
  Node* n = g.add_node("if_else", {c, x}, {y}, {{"num_captured", int64_t{1}}});
  n->subgraphs["then_branch"] = then_b;
  n->subgraphs["else_branch"] = else_b;
  g.mark_output(y);
  std::string text = to_text(g);
  EXPECT_NE(text.find("\n    then_branch:\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\n        body:\n"), std::string::npos) << text;  // nested twice

  auto [p_then, c_then] = run_both(std::move(g), {flag(true), vec({1.5f, -2}, {2})});
  expect_values(p_then[0], {6, -8}, {2}, "then (loop)");
  expect_values(c_then[0], {6, -8}, {2}, "then (loop), compiled");
}

TEST(ControlFlow, VerifierRejectsABodyReadingAnOuterValueDirectly) {
  Graph g;
  Value* c = g.add_input("c", DType::b8, {});
  Value* x = g.add_input("x", DType::f32, fixed_shape({2}));
  auto branch = std::make_shared<Graph>();
  branch->mark_output(branch->add_op("clone", {x}, {}, DType::f32));  // x is not the branch's
  Value* y = g.add_value("y", DType::f32);
  Node* n = g.add_node("if_else", {c}, {y});
  n->subgraphs["then_branch"] = branch;
  n->subgraphs["else_branch"] = branch;
  g.mark_output(y);
  try {
    verify(g, "test");
    FAIL() << "verify accepted an uncaptured outer read";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("in subgraph '"), std::string::npos) << e.what();
  }
}

TEST(ControlFlow, PassesKeepControlFlowNodesApart) {
  // Two if_else nodes with equal inputs and attributes but different bodies: CSE keeps both.
  Graph g = if_graph();
  Value* c = g.inputs()[0];
  Value* x = g.inputs()[1];
  auto then_b = std::make_shared<Graph>();
  Value* tx = then_b->add_input("x", DType::f32, fixed_shape({2, 3}));
  then_b->mark_output(then_b->add_op("add", {tx, then_b->add_constant("one", Tensor::scalar(1.0))}, {}, DType::f32));
  Value* y2 = g.add_value("y2", DType::f32);
  Node* n = g.add_node("if_else", {c, x}, {y2}, {{"num_captured", int64_t{1}}});
  n->subgraphs["then_branch"] = then_b;
  n->subgraphs["else_branch"] = g.nodes()[0]->subgraphs["else_branch"];
  g.mark_output(y2);
  EXPECT_EQ(eliminate_common_subexpressions(g), 0);
  EXPECT_EQ(g.nodes().size(), 2u);
  // All-constant inputs: constant folding leaves control flow to the run.
  Graph h = counting_loop(false);
  h.mutable_inputs().clear();
  Node* loop = h.mutable_nodes()[0].get();
  loop->inputs[1] = h.add_constant("c_const", flag(true));
  loop->inputs[2] = h.add_constant("s0_const", Tensor::scalar(0.0));
  EXPECT_EQ(fold_constants(h), 0);
  std::vector<Tensor> out = Executor(h).run(std::vector<Tensor>{});
  expect_values(out[0], {10.5f}, {}, "loop of constants");
}

TEST(ControlFlow, OptimizeReachesBodies) {
  // Body: s + (2 * 3), a constant product the folding pass computes once, in the body.
  auto body = std::make_shared<Graph>();
  body->add_input("i", DType::i64, {});
  Value* bc = body->add_input("cond", DType::b8, {});
  Value* bs = body->add_input("s", DType::f32, {});
  Value* six = body->add_op("mul", {body->add_constant("two", Tensor::scalar(2.0)), body->add_constant("three", Tensor::scalar(3.0))},
                            {}, DType::f32, SymShape{});
  body->mark_output(body->add_op("clone", {bc}, {}, DType::b8, SymShape{}));
  body->mark_output(body->add_op("add", {bs, six}, {}, DType::f32, SymShape{}));
  Graph g;
  Value* m = g.add_input("m", DType::i64, {});
  Value* s0 = g.add_input("s0", DType::f32, {});
  Value* s = g.add_value("s", DType::f32, SymShape{});
  g.add_node("loop", {m, nullptr, s0}, {s})->subgraphs["body"] = body;
  g.mark_output(s);
  optimize(g);
  const Graph& b = g.nodes()[0]->subgraph("body");
  for (const auto& n : b.nodes()) EXPECT_NE(n->op_name(), "mul") << to_text(g);
  std::vector<Tensor> out = Executor(g).run(std::vector<Tensor>{i64(4), Tensor::scalar(1.0)});
  expect_values(out[0], {25.0f}, {}, "1 + 4 * 6");
}

}  // namespace
}  // namespace kiln::graph
