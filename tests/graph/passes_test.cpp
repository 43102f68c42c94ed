// Tests of the graph passes that fold and simplify (fold_constants, simplify, fold_batch_norm)
// and of the pass manager: each graph is built twice, the unoptimised copy run by the executor is
// the oracle, and the structure after the pass is checked by op counts.
#include "pass_test_util.h"

namespace kiln::graph {
namespace {

using namespace testing;

SymShape fs(const Shape& s) { return fixed_shape(s); }

// ---------------------------------------------------------------- fold_constants

TEST(FoldConstants, ConstantSubgraphsBecomeConstants) {
  auto build = [](Graph& g) {
    Value* x = g.add_input("x", DType::f32, fs({2, 3}));
    Value* a = g.add_constant("a", f32({1, 2, 3}, {3}));
    Value* b = g.add_constant("b", f32({4, 5, 6}, {3}));
    Value* c = g.add_op("add", {a, b}, {}, DType::f32);
    Value* e = g.add_op("exp", {c}, {}, DType::f32);
    Value* y = named_op(g, "y", "mul", {x, e});
    g.mark_output(y);
  };
  Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fold_constants(g), 2); }, 0, "fold");
  EXPECT_EQ(g.nodes().size(), 1u);
  EXPECT_EQ(count_op(g, "mul"), 1);
  EXPECT_TRUE(g.nodes()[0]->input(1)->is_constant());
  // exp(1 + 4) computed by the kernel.
  EXPECT_FLOAT_EQ(g.nodes()[0]->input(1)->constant.to_vector<float>()[0], std::exp(5.0f));
}

TEST(FoldConstants, StaticShapeChainsFold) {
  // reshape(x, cat(gather(shape(x), [0]), [-1])): the ONNX flatten idiom.
  auto build = [](Graph& g) {
    Value* x = g.add_input("x", DType::f32, fs({2, 3, 4}));
    Value* s = g.add_op("shape_of", {x}, {}, DType::i64);
    Value* n = g.add_op("index_select", {s, g.add_constant("i", i64({0}))}, {{"axis", int64_t{0}}}, DType::i64);
    Value* spec = g.add_op("cat", {n, g.add_constant("m1", i64({-1}))}, {{"axis", int64_t{0}}}, DType::i64);
    g.mark_output(named_op(g, "y", "reshape", {x, spec}));
  };
  Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fold_constants(g), 3); }, 0, "shape chain");
  ASSERT_EQ(g.nodes().size(), 1u);
  EXPECT_EQ(g.nodes()[0]->input(1)->constant.to_vector<int64_t>(), (std::vector<int64_t>{2, -1}));
}

TEST(FoldConstants, SymbolicShapesAndDropoutStay) {
  Graph g;
  Value* x = g.add_input("x", DType::f32, {Dim::named("N"), Dim::fixed(3)});
  Value* s = g.add_op("shape_of", {x}, {}, DType::i64);
  g.mark_output(g.add_op("clone", {s}, {}, DType::i64));
  Value* c = g.add_constant("c", f32({1, 2}, {2}));
  g.mark_output(g.add_op("dropout", {c}, {}, DType::f32));
  EXPECT_EQ(fold_constants(g), 0);
  EXPECT_EQ(g.nodes().size(), 3u);
}

TEST(FoldConstants, FoldedGraphOutputKeepsItsNameAsACopy) {
  auto build = [](Graph& g) {
    g.add_input("x", DType::f32, fs({2}));
    Value* c = g.add_constant("c", f32({1, -2}, {2}));
    Value* out = named_op(g, "out", "relu", {c});
    g.mark_output(out);
    g.mark_output(named_op(g, "n", "mul", {g.inputs()[0], g.add_op("exp", {out}, {}, DType::f32)}));
  };
  Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fold_constants(g), 2); }, 0, "output");
  EXPECT_EQ(count_op(g, "relu"), 0);
  EXPECT_EQ(count_op(g, "exp"), 0);  // its reader folds on through the output's constant
  EXPECT_EQ(count_op(g, "clone"), 1);
  EXPECT_EQ(g.outputs()[0]->name, "out");
  EXPECT_EQ(fold_constants(g), 0);  // the copy of a constant is left alone: a fixed point
}

TEST(FoldConstants, OutputsOver64MiBAreNotFolded) {
  Graph g;
  g.add_input("x", DType::f32, fs({1}));
  Value* big = g.add_op("constant_of_shape", {g.add_constant("s", i64({4096, 4097}))}, {}, DType::f32,
                        fs({4096, 4097}));
  g.mark_output(g.add_op("sum", {big}, {{"keepdims", int64_t{0}}}, DType::f32));
  EXPECT_EQ(fold_constants(g), 0);
  Value* small = g.add_op("constant_of_shape", {g.add_constant("s2", i64({4, 4}))}, {}, DType::f32);
  g.mark_output(g.add_op("sum", {small}, {{"keepdims", int64_t{0}}}, DType::f32));
  EXPECT_EQ(fold_constants(g), 2);  // constant_of_shape and the sum over it
}

// ---------------------------------------------------------------- simplify

TEST(Simplify, DeadCodeAndCommonSubexpressions) {
  auto build = [](Graph& g) {
    Value* x = g.add_input("x", DType::f32, fs({2, 3}));
    Value* c1 = g.add_constant("c1", f32({1, 2, 3}, {3}));
    Value* c2 = g.add_constant("c2", f32({1, 2, 3}, {3}));  // same bytes as c1
    Value* a = g.add_op("add", {x, c1}, {}, DType::f32);
    Value* b = g.add_op("add", {x, c2}, {}, DType::f32);
    g.add_op("exp", {x}, {}, DType::f32);  // dead
    Value* s1 = g.add_op("softmax", {a}, {{"axis", int64_t{-1}}}, DType::f32);
    Value* s2 = g.add_op("softmax", {b}, {{"axis", int64_t{-1}}}, DType::f32);
    Value* s3 = g.add_op("softmax", {b}, {{"axis", int64_t{0}}}, DType::f32);  // other attrs: stays
    g.mark_output(named_op(g, "y", "add", {s1, s2}));
    g.mark_output(s3);
  };
  Graph g = check_pass(build, [](Graph& g) { EXPECT_GT(simplify(g), 0); }, 0, "cse");
  EXPECT_EQ(count_op(g, "exp"), 0);
  EXPECT_EQ(count_op(g, "add"), 2);
  EXPECT_EQ(count_op(g, "softmax"), 2);
}

TEST(Simplify, DuplicateProducingAGraphOutputHandsOverItsName) {
  auto build = [](Graph& g) {
    Value* x = g.add_input("x", DType::f32, fs({4}));
    Value* a = named_op(g, "a", "exp", {x});
    Value* b = named_op(g, "b", "exp", {x});
    g.mark_output(named_op(g, "y", "neg", {a}));
    g.mark_output(b);
  };
  Graph g = check_pass(build, [](Graph& g) { simplify(g); }, 0, "cse output");
  EXPECT_EQ(count_op(g, "exp"), 1);
  EXPECT_EQ(g.outputs()[1]->name, "b");
}

TEST(Simplify, NeutralElementsGoOnlyWhenShapeAndDtypeStay) {
  auto build = [](Graph& g) {
    Value* x = g.add_input("x", DType::f32, fs({2, 3}));
    Value* y = g.add_op("add", {x, g.add_constant("z", Tensor::zeros({1, 3}))}, {}, DType::f32);
    y = g.add_op("mul", {g.add_constant("o", Tensor::ones({3})), y}, {}, DType::f32);
    y = g.add_op("sub", {y, g.add_constant("z0", Tensor::scalar(0.0))}, {}, DType::f32);
    y = g.add_op("div", {y, g.add_constant("o1", Tensor::ones({2, 1}))}, {}, DType::f32);
    g.mark_output(named_op(g, "y", "relu", {y}));
    // Broadcasting grows the shape: x + zeros(4, 2, 3) is (4, 2, 3), not x.
    g.mark_output(g.add_op("add", {x, g.add_constant("zb", Tensor::zeros({4, 2, 3}))}, {}, DType::f32));
    // Promotion: an integer tensor times a float one is float.
    Value* i = g.add_op("to", {x}, {{"dtype", std::string("i64")}}, DType::i64);
    g.mark_output(g.add_op("mul", {i, g.add_constant("of", Tensor::ones({1}))}, {}, DType::f32));
    // 0 - x is not x.
    g.mark_output(g.add_op("sub", {g.add_constant("zr", Tensor::zeros({3})), x}, {}, DType::f32));
  };
  Graph g = check_pass(build, [](Graph& g) { simplify(g); }, 0, "neutral");
  EXPECT_EQ(count_op(g, "add"), 1);
  EXPECT_EQ(count_op(g, "mul"), 1);
  EXPECT_EQ(count_op(g, "sub"), 1);
  EXPECT_EQ(count_op(g, "div"), 0);
  EXPECT_EQ(g.outputs()[0]->producer->op_name(), "relu");
}

TEST(Simplify, DataMovementPairsMergeOrVanish) {
  auto build = [](Graph& g) {
    Value* x = g.add_input("x", DType::f32, fs({2, 3, 4}));
    // permute twice to the identity, and twice to another permutation
    Value* p = g.add_op("permute", {x}, {{"perm", std::vector<int64_t>{1, 2, 0}}}, DType::f32);
    Value* back = g.add_op("permute", {p}, {{"perm", std::vector<int64_t>{2, 0, 1}}}, DType::f32);
    Value* p2 = g.add_op("permute", {p}, {{"perm", std::vector<int64_t>{0, 2, 1}}}, DType::f32);
    // reshape twice
    Value* r1 = g.add_op("reshape", {back, g.add_constant("s1", i64({6, 4}))}, {}, DType::f32);
    Value* r2 = g.add_op("reshape", {r1, g.add_constant("s2", i64({4, -1}))}, {}, DType::f32);
    // unsqueeze then squeeze the same axis, clone, contiguous, to(same dtype), dropout
    Value* u = g.add_op("unsqueeze", {r2}, {{"axes", std::vector<int64_t>{2}}}, DType::f32);
    Value* s = g.add_op("squeeze", {u, g.add_constant("ax", i64({2}))}, {}, DType::f32);
    Value* c = g.add_op("clone", {s}, {}, DType::f32);
    c = g.add_op("contiguous", {c}, {}, DType::f32);
    c = g.add_op("to", {c}, {{"dtype", std::string("f32")}}, DType::f32);
    c = g.add_op("dropout", {c}, {}, DType::f32);
    g.mark_output(named_op(g, "y", "exp", {c}));
    g.mark_output(named_op(g, "z", "neg", {p2}));
  };
  Graph g = check_pass(build, [](Graph& g) { simplify(g); }, 0, "movement");
  EXPECT_EQ(count_op(g, "permute"), 1);
  EXPECT_EQ(g.outputs()[1]->producer->input(0)->producer->attr_ints("perm"), (std::vector<int64_t>{1, 0, 2}));
  EXPECT_EQ(count_op(g, "reshape"), 1);
  for (const char* op : {"squeeze", "unsqueeze", "clone", "contiguous", "to", "dropout"}) EXPECT_EQ(count_op(g, op), 0) << op;
}

TEST(Simplify, RemovedNodeProducingAnOutputRenamesItsSource) {
  auto build = [](Graph& g) {
    Value* x = g.add_input("x", DType::f32, fs({3}));
    Value* r = named_op(g, "r", "relu", {x});
    g.mark_output(named_op(g, "out", "clone", {r}));
    g.mark_output(named_op(g, "e", "exp", {r}));
    // clone of a graph input producing an output must stay (nothing to rename).
    g.mark_output(named_op(g, "copy", "clone", {x}));
  };
  Graph g = check_pass(build, [](Graph& g) { simplify(g); }, 0, "rename");
  EXPECT_EQ(count_op(g, "clone"), 1);
  EXPECT_EQ(g.outputs()[0]->producer->op_name(), "relu");
  EXPECT_EQ(g.outputs()[0]->name, "out");
}

// ---------------------------------------------------------------- fold_batch_norm

void add_bn(Graph& g, Value* y, int64_t c, Generator& gen, const std::string& out) {
  Value* scale = g.add_constant({}, randn({c}, gen));
  Value* bias = g.add_constant({}, randn({c}, gen));
  Value* mean = g.add_constant({}, randn({c}, gen));
  Value* var = g.add_constant({}, uniform({c}, 0.5, 2.0, gen));
  g.mark_output(named_op(g, out, "batch_norm", {y, scale, bias, mean, var}, {{"epsilon", 1e-3}}));
}

TEST(FoldBatchNorm, ConvAndLinearAbsorbTheNormalisation) {
  auto build = [](Graph& g) {
    Generator gen(3);
    Value* x = g.add_input("x", DType::f32, fs({2, 3, 8, 8}));
    Value* w = g.add_constant("w", randn({4, 3, 3, 3}, gen));
    Value* b = g.add_constant("b", randn({4}, gen));
    Value* y = g.add_op("conv2d", {x, w, b}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}}, DType::f32,
                        fs({2, 4, 8, 8}));
    add_bn(g, y, 4, gen, "conv_out");
    Value* x2 = g.add_input("x2", DType::f32, fs({5, 6}));
    Value* y2 = g.add_op("linear", {x2, g.add_constant("w2", randn({7, 6}, gen))}, {}, DType::f32, fs({5, 7}));
    add_bn(g, y2, 7, gen, "lin_out");
  };
  Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fold_batch_norm(g), 2); }, 2e-5, "bn");
  EXPECT_EQ(count_op(g, "batch_norm"), 0);
  EXPECT_EQ(g.outputs()[0]->name, "conv_out");
  EXPECT_EQ(g.outputs()[0]->producer->op_name(), "conv2d");
  EXPECT_EQ(g.outputs()[1]->producer->input(2)->constant.shape(), (Shape{7}));
}

TEST(FoldBatchNorm, SharedOrActivatedProducersStay) {
  Graph g;
  Generator gen(3);
  Value* x = g.add_input("x", DType::f32, fs({2, 3, 4, 4}));
  Value* y = g.add_op("conv2d", {x, g.add_constant("w", randn({4, 3, 1, 1}, gen))}, {}, DType::f32);
  add_bn(g, y, 4, gen, "a");
  g.mark_output(y);  // the conv output is read elsewhere too
  Value* z = g.add_op("conv2d", {x, g.add_constant("w2", randn({4, 3, 1, 1}, gen))},
                      {{"activation", std::string("relu")}}, DType::f32);
  add_bn(g, z, 4, gen, "b");
  Value* x3 = g.add_input("x3", DType::f32, fs({2, 5, 6}));  // (N, T, C): bn would normalise T
  add_bn(g, g.add_op("linear", {x3, g.add_constant("w3", randn({5, 6}, gen))}, {}, DType::f32), 5, gen, "c");
  EXPECT_EQ(fold_batch_norm(g), 0);
}

// ---------------------------------------------------------------- optimize

TEST(Optimize, RunsEveryPassAndLogsIt) {
  auto build = [](Graph& g) {
    Generator gen(11);
    Value* x = g.add_input("x", DType::f32, fs({4, 8}));
    Value* w = g.add_constant("w", randn({8, 16}, gen));
    Value* h = g.add_op("matmul", {x, w}, {}, DType::f32, fs({4, 16}));
    h = g.add_op("add", {h, g.add_constant("b", randn({16}, gen))}, {}, DType::f32, fs({4, 16}));
    h = g.add_op("relu", {h}, {}, DType::f32, fs({4, 16}));
    Value* scale = g.add_op("mul", {g.add_constant("two", Tensor::scalar(2.0)), g.add_constant("half", Tensor::scalar(0.5))},
                            {}, DType::f32);
    h = g.add_op("mul", {h, scale}, {}, DType::f32, fs({4, 16}));  // * (2 * 0.5) = * 1: folds, then goes
    h = g.add_op("clone", {h}, {}, DType::f32, fs({4, 16}));
    Value* e = g.add_op("exp", {g.add_op("neg", {h}, {}, DType::f32, fs({4, 16}))}, {}, DType::f32, fs({4, 16}));
    g.mark_output(named_op(g, "y", "add", {e, h}, {}, DType::f32, fs({4, 16})));
  };
  Graph g = check_optimize(build, 1e-5);
  EXPECT_EQ(count_op(g, "linear_act"), 1);
  EXPECT_EQ(count_op(g, "fused_elementwise"), 1);
  EXPECT_EQ(g.nodes().size(), 2u);

  Graph g2;
  build(g2);
  PassOptions o;
  o.fuse = false;
  auto log = optimize(g2, o);
  ASSERT_GE(log.size(), 3u);
  EXPECT_EQ(log[0].pass, "fold_constants");
  EXPECT_EQ(count_op(g2, "fused_elementwise"), 0);
  EXPECT_EQ(count_op(g2, "matmul"), 1);
  for (const auto& e : log) EXPECT_GE(e.nodes_before, e.nodes_after) << e.pass;

  Graph g3;
  build(g3);
  PassOptions p;
  p.print_after = "fuse_patterns";
  ::testing::internal::CaptureStderr();
  optimize(g3, p);
  std::string printed = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(printed.find("graph after fuse_patterns"), std::string::npos) << printed;
  EXPECT_NE(printed.find("linear_act"), std::string::npos) << printed;
  EXPECT_EQ(printed.find("fused_elementwise"), std::string::npos) << printed;
}

}  // namespace
}  // namespace kiln::graph
