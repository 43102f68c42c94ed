// Tests of sequence and optional values in the graph IR (graph.h ValueKind, kernels.h RtValue,
// kernels_sequence.cpp, sequence_map and sequence-carrying loops in kernels_control.cpp): graphs
// built in code, results checked against lists and loops written here. Graphs run on the plain
// interpreter and with prepared bodies; those with tensor inputs and outputs also compiled
// (optimised and memory-planned), where a tensor held by a sequence must keep its bytes.
#include <gtest/gtest.h>

#include <vector>

#include "kiln/core/error.h"
#include "kiln/graph/compiled.h"
#include "kiln/graph/executor.h"
#include "kiln/graph/memory_plan.h"

namespace kiln::graph {
namespace {

Tensor vec(std::vector<float> v, Shape s) { return Tensor::from_vector<float>(v, s); }
Tensor i64(int64_t v) { return Tensor::scalar(static_cast<double>(v), DType::i64); }

void expect_values(const Tensor& got, const std::vector<float>& want, const Shape& shape, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_EQ(got.shape(), shape) << what;
  std::vector<float> g = got.to_vector<float>();
  ASSERT_EQ(g.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_FLOAT_EQ(g[i], want[i]) << what << " [" << i << "]";
}

Value* seq_value(Graph& g, std::string name = {}) {
  Value* v = g.add_value(std::move(name), DType::f32);
  v->kind = ValueKind::sequence;
  return v;
}

Value* seq_op(Graph& g, std::string_view op, std::vector<Value*> in, std::map<std::string, Attr, std::less<>> attrs = {}) {
  Value* out = seq_value(g);
  g.add_node(op, std::move(in), {out}, std::move(attrs));
  return out;
}

// The graph's outputs on the interpreter and on an executor with prepared kernels (the same
// numbers expected from both).
std::vector<std::vector<RtValue>> run_values_both(const Graph& g, const std::vector<RtValue>& inputs) {
  verify(g, "test graph");
  return {Executor(g).run_values(inputs), Executor(g, /*prepare_constants=*/true).run_values(inputs)};
}

TEST(Sequence, InsertEraseAtAndLengthWithNegativePositions) {
  Graph g;
  Value* a = g.add_input("a", DType::f32, fixed_shape({2}));
  Value* b = g.add_input("b", DType::f32, fixed_shape({1}));
  Value* c = g.add_input("c", DType::f32, fixed_shape({3}));
  Value* s = seq_op(g, "sequence_construct", {a, b});                                  // [a, b]
  s = seq_op(g, "sequence_insert", {s, c, g.add_constant("m1", i64(-1))});            // [a, c, b]
  s = seq_op(g, "sequence_insert", {s, b, g.add_constant("m3", i64(-3))});            // [b, a, c, b]
  s = seq_op(g, "sequence_insert", {s, a});                                            // [b, a, c, b, a]
  Value* erased = seq_op(g, "sequence_erase", {s, g.add_constant("m2", i64(-2))});     // [b, a, c, a]
  Value* popped = seq_op(g, "sequence_erase", {erased});                               // [b, a, c]
  Value* at = g.add_op("sequence_at", {popped, g.add_constant("m1b", Tensor::scalar(-1, DType::i32))}, {}, DType::f32);
  Value* len = g.add_op("sequence_length", {erased}, {}, DType::i64);
  for (Value* v : {s, erased, popped, at, len}) g.mark_output(v);
  const Tensor av = vec({1, 2}, {2}), bv = vec({3}, {1}), cv = vec({4, 5, 6}, {3});
  for (const auto& out : run_values_both(g, {RtValue(av), RtValue(bv), RtValue(cv)})) {
    auto expect_seq = [](const RtValue& v, const std::vector<Tensor>& want, const std::string& what) {
      ASSERT_TRUE(v.is_sequence()) << what;
      ASSERT_EQ(v.seq.size(), want.size()) << what;
      for (size_t i = 0; i < want.size(); ++i)
        expect_values(v.seq[i], want[i].to_vector<float>(), want[i].shape(), what + " element " + std::to_string(i));
    };
    expect_seq(out[0], {bv, av, cv, bv, av}, "inserted");
    expect_seq(out[1], {bv, av, cv, av}, "erased at -2");
    expect_seq(out[2], {bv, av, cv}, "erased last");
    expect_values(out[3].tensor, {4, 5, 6}, {3}, "at -1");
    ASSERT_TRUE(out[4].is_tensor());
    EXPECT_EQ(out[4].tensor.dtype(), DType::i64);
    EXPECT_EQ(out[4].tensor.item(), 4.0);
  }
}

TEST(Sequence, SplitToSequenceWithAndWithoutSplit) {
  Graph g;
  Value* x = g.add_input("x", DType::f32, fixed_shape({2, 5}));
  Value* ones = seq_op(g, "split_to_sequence", {x}, {{"axis", int64_t{1}}, {"keepdims", int64_t{0}}});
  Value* kept = seq_op(g, "split_to_sequence", {x}, {{"axis", int64_t{-1}}});
  Value* by2 = seq_op(g, "split_to_sequence", {x, g.add_constant("two", i64(2))}, {{"axis", int64_t{1}}});
  Value* sizes = seq_op(g, "split_to_sequence", {x, g.add_constant("sizes", Tensor::from_vector<int64_t>({1, 4}))},
                        {{"axis", int64_t{1}}, {"keepdims", int64_t{0}}});  // keepdims only matters without split
  Value* rows = seq_op(g, "split_to_sequence", {x});
  for (Value* v : {ones, kept, by2, sizes, rows}) g.mark_output(v);
  std::vector<float> xv(10);
  for (int i = 0; i < 10; ++i) xv[static_cast<size_t>(i)] = static_cast<float>(i * i) - 3.0f;
  // Column range [c0, c1) of x, row-major, by hand.
  auto cols = [&](int c0, int c1) {
    std::vector<float> out;
    for (int r = 0; r < 2; ++r)
      for (int c = c0; c < c1; ++c) out.push_back(xv[static_cast<size_t>(r * 5 + c)]);
    return out;
  };
  for (const auto& out : run_values_both(g, {RtValue(vec(xv, {2, 5}))})) {
    ASSERT_EQ(out[0].seq.size(), 5u);
    ASSERT_EQ(out[1].seq.size(), 5u);
    for (int c = 0; c < 5; ++c) {
      expect_values(out[0].seq[static_cast<size_t>(c)], cols(c, c + 1), {2}, "squeezed column");
      expect_values(out[1].seq[static_cast<size_t>(c)], cols(c, c + 1), {2, 1}, "kept column");
    }
    ASSERT_EQ(out[2].seq.size(), 3u);
    expect_values(out[2].seq[0], cols(0, 2), {2, 2}, "by 2, first");
    expect_values(out[2].seq[1], cols(2, 4), {2, 2}, "by 2, second");
    expect_values(out[2].seq[2], cols(4, 5), {2, 1}, "by 2, the smaller last");
    ASSERT_EQ(out[3].seq.size(), 2u);
    expect_values(out[3].seq[0], cols(0, 1), {2, 1}, "sizes [1, 4], first");
    expect_values(out[3].seq[1], cols(1, 5), {2, 4}, "sizes [1, 4], second");
    ASSERT_EQ(out[4].seq.size(), 2u);
    expect_values(out[4].seq[1], std::vector<float>(xv.begin() + 5, xv.end()), {1, 5}, "row 1 (axis 0, keepdims)");
  }
}

TEST(Sequence, ConcatFromSequenceWithAndWithoutNewAxisRunsCompiled) {
  // Tensor inputs and outputs, so the graph also runs compiled with a memory plan.
  Graph g;
  Value* x = g.add_input("x", DType::f32, fixed_shape({2, 3}));
  Value* y = g.add_op("neg", {x}, {}, DType::f32, fixed_shape({2, 3}));
  Value* z = g.add_op("relu", {x}, {}, DType::f32, fixed_shape({2, 3}));
  Value* s = seq_op(g, "sequence_construct", {x, y, z});
  g.mark_output(g.add_op("concat_from_sequence", {s}, {{"axis", int64_t{-1}}, {"new_axis", int64_t{1}}}, DType::f32));
  g.mark_output(g.add_op("concat_from_sequence", {s}, {{"axis", int64_t{0}}}, DType::f32));
  const std::vector<float> xv = {1, -2, 3, -4, 5, -6};
  std::vector<std::vector<float>> parts = {xv, {}, {}};
  for (float v : xv) parts[1].push_back(-v), parts[2].push_back(v > 0 ? v : 0);
  std::vector<float> stacked, rows;
  for (size_t i = 0; i < 6; ++i)
    for (size_t k = 0; k < 3; ++k) stacked.push_back(parts[k][i]);  // out[r][c][k] = part_k[r][c]
  for (const auto& p : parts) rows.insert(rows.end(), p.begin(), p.end());
  verify(g, "test graph");
  std::vector<Tensor> plain = Executor(g).run({vec(xv, {2, 3})});
  Compiled compiled(std::move(g));
  for (const auto& out : {plain, compiled.run({vec(xv, {2, 3})})}) {
    expect_values(out[0], stacked, {2, 3, 3}, "new axis -1");
    expect_values(out[1], rows, {6, 3}, "axis 0");
  }
}

TEST(Sequence, TensorsHeldBySequencesStayOutOfTheArena) {
  // r goes into a sequence and is read back after t and u, which have its size: with r planned,
  // u could take r's bytes after r's last direct use (the construct) and the read would see u.
  Graph g;
  Value* x = g.add_input("x", DType::f32, fixed_shape({64}));
  Value* r = g.add_op("relu", {x}, {}, DType::f32, fixed_shape({64}));
  Value* s = seq_op(g, "sequence_construct", {r});
  Value* t = g.add_op("neg", {x}, {}, DType::f32, fixed_shape({64}));
  Value* u = g.add_op("neg", {t}, {}, DType::f32, fixed_shape({64}));
  Value* e = g.add_op("sequence_at", {s, g.add_constant("zero", i64(0))}, {}, DType::f32, fixed_shape({64}));
  g.mark_output(g.add_op("add", {e, u}, {}, DType::f32, fixed_shape({64})));
  MemoryPlan plan = plan_memory(g, {});
  EXPECT_FALSE(plan.buffer_of.count(r->id)) << "a tensor read into a sequence was planned";
  EXPECT_FALSE(plan.buffer_of.count(s->id));
  EXPECT_FALSE(plan.buffer_of.count(e->id));
  EXPECT_TRUE(plan.buffer_of.count(t->id));
  std::vector<float> xv(64), want(64);
  for (size_t i = 0; i < 64; ++i) {
    xv[i] = static_cast<float>(i) - 30.5f;
    want[i] = (xv[i] > 0 ? xv[i] : 0) + xv[i];
  }
  CompileOptions no_passes;
  no_passes.passes.fold_constants = no_passes.passes.cse = no_passes.passes.simplify = no_passes.passes.fuse = false;
  Compiled c(std::move(g), no_passes);
  for (int run = 0; run < 2; ++run) expect_values(c.run({vec(xv, {64})})[0], want, {64}, "relu(x) + x");
}

// SequenceMap body: (element, w) -> element * w + 1, with w an outer value the node captures.
TEST(Sequence, SequenceMapWithACapturedValue) {
  Graph g;
  Value* in = g.add_input("in", DType::f32, {});
  in->kind = ValueKind::sequence;
  in->shape.reset();
  Value* w = g.add_input("w", DType::f32, fixed_shape({1}));
  auto body = std::make_shared<Graph>();
  Value* el = body->add_input("el", DType::f32, {});
  el->shape.reset();
  Value* bw = body->add_input("w", DType::f32, fixed_shape({1}));
  Value* prod = body->add_op("mul", {el, bw}, {}, DType::f32);
  body->mark_output(body->add_op("add", {prod, body->add_constant("one", Tensor::ones({1}))}, {}, DType::f32));
  Value* out = seq_value(g, "out");
  Node* n = g.add_node("sequence_map", {in, w}, {out}, {{"num_captured", int64_t{1}}});
  n->subgraphs["body"] = body;
  g.mark_output(out);
  const std::vector<std::vector<float>> elems = {{1, 2, 3}, {-4}, {0.5f, 0.25f}};
  std::vector<Tensor> seq;
  for (const auto& e : elems) seq.push_back(vec(e, {static_cast<int64_t>(e.size())}));
  for (const auto& res : run_values_both(g, {RtValue::sequence(seq), RtValue(vec({3}, {1}))})) {
    ASSERT_TRUE(res[0].is_sequence());
    ASSERT_EQ(res[0].seq.size(), elems.size());
    for (size_t i = 0; i < elems.size(); ++i) {
      std::vector<float> want;
      for (float v : elems[i]) want.push_back(v * 3 + 1);
      expect_values(res[0].seq[i], want, {static_cast<int64_t>(want.size())}, "element " + std::to_string(i));
    }
  }
  // An empty sequence maps to an empty sequence.
  auto empty = Executor(g).run_values({RtValue::sequence({}), RtValue(vec({3}, {1}))});
  ASSERT_TRUE(empty[0].is_sequence());
  EXPECT_TRUE(empty[0].seq.empty());
}

// Loop body: (i, cond, seq, acc, x captured) -> (cond, insert(seq, acc + x), acc + x): after M
// trips seq holds x, 2x, ..., Mx.
TEST(Sequence, LoopAccumulatesASequence) {
  Graph g;
  Value* x = g.add_input("x", DType::f32, fixed_shape({2}));
  Value* m = g.add_input("m", DType::i64, {});
  Value* empty = seq_op(g, "sequence_empty", {});
  auto body = std::make_shared<Graph>();
  body->add_input("i", DType::i64, {});
  Value* cond = body->add_input("cond", DType::b8, {});
  Value* bs = body->add_input("seq", DType::f32, {});
  bs->kind = ValueKind::sequence;
  bs->shape.reset();
  Value* acc = body->add_input("acc", DType::f32, fixed_shape({2}));
  Value* bx = body->add_input("x", DType::f32, fixed_shape({2}));
  Value* acc2 = body->add_op("add", {acc, bx}, {}, DType::f32, fixed_shape({2}));
  body->mark_output(body->add_op("clone", {cond}, {}, DType::b8, SymShape{}));
  body->mark_output(seq_op(*body, "sequence_insert", {bs, acc2}));
  body->mark_output(acc2);
  Value* seq_out = seq_value(g, "seq_out");
  Value* acc_out = g.add_value("acc_out", DType::f32);
  Node* n = g.add_node("loop", {m, nullptr, empty, g.add_constant("acc0", Tensor::zeros({2})), x}, {seq_out, acc_out},
                       {{"num_captured", int64_t{1}}});
  n->subgraphs["body"] = body;
  g.mark_output(seq_out);
  g.mark_output(g.add_op("concat_from_sequence", {seq_out}, {{"axis", int64_t{0}}, {"new_axis", int64_t{1}}}, DType::f32));
  const std::vector<float> xv = {1.5f, -2};
  for (const auto& res : run_values_both(g, {RtValue(vec(xv, {2})), RtValue(i64(4))})) {
    ASSERT_TRUE(res[0].is_sequence());
    ASSERT_EQ(res[0].seq.size(), 4u);
    std::vector<float> all;
    for (size_t k = 0; k < 4; ++k) {
      std::vector<float> want = {xv[0] * static_cast<float>(k + 1), xv[1] * static_cast<float>(k + 1)};
      expect_values(res[0].seq[k], want, {2}, "element " + std::to_string(k));
      all.insert(all.end(), want.begin(), want.end());
    }
    expect_values(res[1].tensor, all, {4, 2}, "stacked");
  }
  // Zero trips: the initial empty sequence comes back, which concat_from_sequence refuses.
  try {
    Executor(g).run_values({RtValue(vec(xv, {2})), RtValue(i64(0))});
    ADD_FAILURE() << "concatenated an empty sequence";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot concatenate an empty sequence"), std::string::npos) << e.what();
  }
}

TEST(Sequence, OptionalsHoldATensorOrNothing) {
  Graph g;
  Value* x = g.add_input("x", DType::f32, fixed_shape({2}));
  Value* some = g.add_value("some", DType::f32);
  some->kind = ValueKind::optional_tensor;
  g.add_node("optional_construct", {x}, {some});
  Value* nothing = g.add_value("nothing", DType::f32);
  nothing->kind = ValueKind::optional_tensor;
  g.add_node("optional_construct", {}, {nothing});
  g.mark_output(g.add_op("optional_has_element", {some}, {}, DType::b8));
  g.mark_output(g.add_op("optional_has_element", {nothing}, {}, DType::b8));
  g.mark_output(g.add_op("optional_get_element", {some}, {}, DType::f32));
  g.mark_output(nothing);
  for (const auto& res : run_values_both(g, {RtValue(vec({7, 8}, {2}))})) {
    EXPECT_EQ(res[0].tensor.item(), 1.0);
    EXPECT_EQ(res[1].tensor.item(), 0.0);
    expect_values(res[2].tensor, {7, 8}, {2}, "get");
    EXPECT_TRUE(res[3].is_none());
  }
}

TEST(Sequence, BadPositionsAndEmptyOptionalsAreErrorsNamingTheNode) {
  auto error_of = [](Graph& g, const std::vector<RtValue>& inputs) -> std::string {
    try {
      Executor(g).run_values(inputs);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  const RtValue two = RtValue::sequence({vec({1}, {1}), vec({2}, {1})});
  {
    Graph g;
    Value* s = g.add_input("s", DType::f32, {});
    s->kind = ValueKind::sequence;
    g.mark_output(g.add_op("sequence_at", {s, g.add_constant("p", i64(2))}, {}, DType::f32, std::nullopt, "pick"));
    std::string m = error_of(g, {two});
    EXPECT_NE(m.find("'pick'"), std::string::npos) << m;
    EXPECT_NE(m.find("position 2 is out of range for a sequence of 2"), std::string::npos) << m;
    std::string kind = error_of(g, {RtValue(vec({1}, {1}))});
    EXPECT_NE(kind.find("input 's' is tensor"), std::string::npos) << kind;
  }
  {
    Graph g;
    Value* s = g.add_input("s", DType::f32, {});
    s->kind = ValueKind::sequence;
    Value* out = seq_value(g);
    g.add_node("sequence_insert", {s, g.add_constant("t", vec({0}, {1})), g.add_constant("p", i64(-3))}, {out}, {}, "put");
    g.mark_output(out);
    std::string m = error_of(g, {two});
    EXPECT_NE(m.find("'put'"), std::string::npos) << m;
    EXPECT_NE(m.find("position -3 is out of range for a sequence of 2 (allowed [-2, 2])"), std::string::npos) << m;
  }
  {
    Graph g;
    Value* s = g.add_input("s", DType::f32, {});
    s->kind = ValueKind::sequence;
    Value* out = seq_value(g);
    g.add_node("sequence_erase", {s}, {out}, {}, "drop");
    g.mark_output(out);
    std::string m = error_of(g, {RtValue::sequence({})});
    EXPECT_NE(m.find("'drop'"), std::string::npos) << m;
    EXPECT_NE(m.find("empty sequence"), std::string::npos) << m;
  }
  {
    Graph g;
    Value* o = g.add_input("o", DType::f32, {});
    o->kind = ValueKind::optional_tensor;
    g.mark_output(g.add_op("optional_get_element", {o}, {}, DType::f32, std::nullopt, "unwrap"));
    std::string m = error_of(g, {RtValue()});
    EXPECT_NE(m.find("'unwrap'"), std::string::npos) << m;
    EXPECT_NE(m.find("the optional is empty"), std::string::npos) << m;
  }
}

TEST(Sequence, KindsArePrintedAndVerified) {
  Graph g;
  Value* x = g.add_input("x", DType::f32, fixed_shape({2}));
  Value* s = seq_op(g, "sequence_construct", {x});
  Value* o = g.add_value("o", DType::f32);
  o->kind = ValueKind::optional_sequence;
  g.add_node("optional_construct", {s}, {o});
  g.mark_output(o);
  std::string text = to_text(g);
  EXPECT_NE(text.find(": seq<f32> = sequence_construct(%x)"), std::string::npos) << text;
  EXPECT_NE(text.find("%o: opt<seq<f32>> = optional_construct"), std::string::npos) << text;
  EXPECT_NO_THROW(verify(g, "test"));
  // Tensor-only entry points refuse a graph with sequence inputs or outputs, pointing at run_values.
  try {
    Executor(g).run({vec({1, 2}, {2})});
    ADD_FAILURE() << "run() took a graph with an optional output";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("run_values"), std::string::npos) << e.what();
  }
  // A tensor op reading a sequence, and a sequence op given a tensor, fail the verifier.
  g.add_op("relu", {s}, {}, DType::f32, std::nullopt, "bad_relu");
  try {
    verify(g, "test");
    ADD_FAILURE() << "relu on a sequence passed the verifier";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("node 'bad_relu' (relu) input 0 must be a tensor"), std::string::npos) << e.what();
  }
  Graph h;
  Value* y = h.add_input("y", DType::f32, fixed_shape({2}));
  h.add_op("sequence_length", {y}, {}, DType::i64, std::nullopt, "len");
  EXPECT_THROW(verify(h, "test"), InternalError);
}

}  // namespace
}  // namespace kiln::graph
