// Tests of the fusion passes (fuse_patterns, fuse_elementwise) and of the fused_elementwise
// interpreter: the unoptimised graph, run by the executor, is the oracle for the fused one.
#include "kiln/graph/codegen.h"
#include "kiln/graph/fused_program.h"
#include "kiln/graph/kernels.h"
#include "kiln/ops/shape_ops.h"
#include "pass_test_util.h"

namespace kiln::graph {
namespace {

using namespace testing;

SymShape fs(const Shape& s) { return fixed_shape(s); }
Value* cst(Graph& g, double v) { return g.add_constant({}, Tensor::scalar(v)); }
Value* op(Graph& g, std::string_view name, std::vector<Value*> in, Attrs a = {}) {
  return g.add_op(name, std::move(in), std::move(a), DType::f32);
}

// ---------------------------------------------------------------- fuse_patterns

TEST(FusePatterns, MatmulBiasAndActivationsBecomeLinearAct) {
  auto build = [](Graph& g) {
    Generator gen(1);
    Value* x = g.add_input("x", DType::f32, fs({2, 5, 8}));
    Value* h = op(g, "matmul", {x, g.add_constant("w", randn({8, 6}, gen))});
    h = op(g, "add", {g.add_constant("b", randn({6}, gen)), h});
    g.mark_output(named_op(g, "y", "relu", {h}));
    Value* x2 = g.add_input("x2", DType::f32, fs({3, 4}));
    Value* l = op(g, "linear", {x2, g.add_constant("w2", randn({5, 4}, gen)), g.add_constant("b2", randn({5}, gen))});
    g.mark_output(op(g, "gelu", {l}, {{"approximate", std::string("tanh")}}));
    Value* x3 = g.add_input("x3", DType::f32, fs({1, 2, 6, 6}));
    Value* c = op(g, "conv2d", {x3, g.add_constant("w3", randn({3, 2, 3, 3}, gen))});
    g.mark_output(op(g, "relu", {c}));
  };
  // matmul -> linear, + bias, relu, gelu, conv+relu: five rewrites.
  Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fuse_patterns(g), 5); }, 1e-5, "linear");
  EXPECT_EQ(count_op(g, "linear_act"), 2);
  EXPECT_EQ(count_op(g, "conv2d"), 1);
  EXPECT_EQ(g.nodes().size(), 3u);
  EXPECT_EQ(g.outputs()[0]->producer->attr_string("activation"), "relu");
  EXPECT_EQ(g.outputs()[1]->producer->attr_string("activation"), "gelu_tanh");
  EXPECT_EQ(g.outputs()[2]->producer->attr_string("activation"), "relu");
}

// A bias-free matmul by a constant (as exports of zero-bias layers simplify to) still reaches
// the fused GEMM epilogue: matmul -> linear(W^T), then linear + gelu -> linear_act, and a later
// constant add becomes the linear's bias.
TEST(FusePatterns, BiasFreeMatmulBecomesLinearAndTakesActivationOrBias) {
  auto build = [](Graph& g) {
    Generator gen(2);
    Value* x = g.add_input("x", DType::f32, fs({2, 5, 8}));
    Value* h = op(g, "matmul", {x, g.add_constant("w", randn({8, 6}, gen))});
    g.mark_output(named_op(g, "y", "gelu", {h}, {{"approximate", std::string("tanh")}}));
    Value* h2 = op(g, "matmul", {x, g.add_constant("w2", randn({8, 3}, gen))});
    g.mark_output(named_op(g, "z", "add", {h2, g.add_constant("b2", randn({3}, gen))}));
  };
  Graph g = check_pass(build, [](Graph& g) { EXPECT_GT(fuse_patterns(g), 0); }, 1e-5, "bias-free matmul");
  EXPECT_EQ(count_op(g, "matmul"), 0);
  EXPECT_EQ(count_op(g, "linear_act"), 1);
  EXPECT_EQ(count_op(g, "linear"), 1);
  EXPECT_EQ(g.nodes().size(), 2u);
  EXPECT_NE(g.outputs()[1]->producer->input(2), nullptr);  // the add became the bias
}

// A residual connection r + linear(...) becomes the linear's fourth input (the GEMM adds it in
// its epilogue); under an activation it must not: relu(r + linear) keeps the relu outside, and
// a bias added after the residual stays a separate add. Values must match the unfused graph.
TEST(FusePatterns, ResidualAddFusesIntoLinearButNotUnderActivationOrBias) {
  auto build = [](Graph& g) {
    Generator gen(5);
    Value* x = g.add_input("x", DType::f32, fs({2, 7, 8}));
    Value* r = g.add_input("r", DType::f32, fs({2, 7, 6}));
    auto w = [&](const char* name) { return g.add_constant(name, randn({6, 8}, gen)); };
    Value* l1 = g.add_op("linear", {x, w("w1"), g.add_constant("b1", randn({6}, gen))}, {}, DType::f32, fs({2, 7, 6}));
    g.mark_output(named_op(g, "y1", "add", {r, l1}, {}, DType::f32, fs({2, 7, 6})));
    Value* l2 = g.add_op("linear", {x, w("w2")}, {}, DType::f32, fs({2, 7, 6}));
    Value* s2 = g.add_op("add", {l2, r}, {}, DType::f32, fs({2, 7, 6}));
    g.mark_output(named_op(g, "y2", "relu", {s2}, {}, DType::f32, fs({2, 7, 6})));
    Value* l3 = g.add_op("linear_act", {x, w("w3")}, {{"activation", std::string("gelu_tanh")}}, DType::f32,
                         fs({2, 7, 6}));
    Value* s3 = g.add_op("add", {l3, r}, {}, DType::f32, fs({2, 7, 6}));
    g.mark_output(named_op(g, "y3", "add", {s3, g.add_constant("b3", randn({6}, gen))}, {}, DType::f32,
                           fs({2, 7, 6})));
    // Broadcast residual (a bias-shaped tensor that is not constant): no fusion.
    Value* l4 = g.add_op("linear", {x, w("w4")}, {}, DType::f32, fs({2, 7, 6}));
    Value* r4 = g.add_input("r4", DType::f32, fs({6}));
    g.mark_output(named_op(g, "y4", "add", {l4, r4}, {}, DType::f32, fs({2, 7, 6})));
  };
  Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fuse_patterns(g), 3); }, 1e-6, "residual");
  const Node* y1 = g.outputs()[0]->producer;
  EXPECT_EQ(y1->op_name(), "linear");
  ASSERT_NE(y1->input(3), nullptr);
  EXPECT_EQ(y1->input(3)->name, "r");
  EXPECT_EQ(g.outputs()[1]->producer->op_name(), "relu");
  EXPECT_EQ(g.outputs()[1]->producer->input(0)->producer->input(3)->name, "r");
  const Node* y3 = g.outputs()[2]->producer;
  EXPECT_EQ(y3->op_name(), "add");  // the bias after the residual
  EXPECT_EQ(y3->input(0)->producer->op_name(), "linear_act");
  EXPECT_EQ(y3->input(0)->producer->attr_string("activation"), "gelu_tanh");
  EXPECT_EQ(g.outputs()[3]->producer->op_name(), "add");
}

// conv2d + relu + max_pool2d becomes one conv2d node; bitwise equal to unfused. A 2x2 / stride-2
// pool is taken inside the convolution's last pass (Conv2dOptions::max_pool2); any other pool (3x3
// stride 2 here, and a ceil-mode pool of an odd size) runs over chunks of the batch as they are
// convolved (30 images of 32x26x26 outputs: 3 chunks of about 1 MiB).
TEST(FusePatterns, MaxPoolFusesIntoConvolution) {
  struct Pool {
    int64_t k, s, ceil, size;
  };
  for (const Pool& p : {Pool{2, 2, 0, 28}, Pool{3, 2, 0, 28}, Pool{2, 2, 1, 27}, Pool{2, 2, 1, 28}}) {
    auto build = [&](Graph& g) {
      Generator gen(3);
      Value* x = g.add_input("x", DType::f32, fs({30, 1, p.size, p.size}));
      Value* c =
          op(g, "conv2d", {x, g.add_constant("w", randn({32, 1, 3, 3}, gen)), g.add_constant("b", randn({32}, gen))});
      Value* r = op(g, "relu", {c});
      g.mark_output(named_op(g, "y", "max_pool2d", {r},
                             {{"kernel_shape", std::vector<int64_t>{p.k, p.k}},
                              {"strides", std::vector<int64_t>{p.s, p.s}},
                              {"ceil_mode", p.ceil}}));
    };
    Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fuse_patterns(g), 2); }, 0, "conv+relu+pool");
    ASSERT_EQ(g.nodes().size(), 1u);
    const Node& n = *g.nodes()[0];
    EXPECT_EQ(n.op_name(), "conv2d");
    EXPECT_EQ(n.attr_string("activation"), "relu");
    EXPECT_EQ(n.attr_string("pool"), "max");
    EXPECT_EQ(n.attr_ints("pool_kernel_shape"), (std::vector<int64_t>{p.k, p.k}));
  }
}

TEST(FusePatterns, IntermediatesWithOtherReadersBlockFusion) {
  Graph g;
  Generator gen(1);
  Value* x = g.add_input("x", DType::f32, fs({2, 8}));
  Value* h = op(g, "matmul", {x, g.add_constant("w", randn({8, 6}, gen))});
  g.mark_output(op(g, "add", {h, g.add_constant("b", randn({6}, gen))}));
  g.mark_output(h);  // the matmul output is a graph output
  Value* l = op(g, "linear", {x, g.add_constant("w2", randn({5, 8}, gen))});
  g.mark_output(op(g, "relu", {l}));
  g.mark_output(op(g, "exp", {l}));  // read twice
  EXPECT_EQ(fuse_patterns(g), 1);      // only the matmul itself becomes a linear (no bias: h is an output)
  EXPECT_EQ(count_op(g, "add"), 1);
  EXPECT_EQ(count_op(g, "relu"), 1);
}

// The GELU decompositions exporters write, each checked against the unfused graph.
Value* gelu_erf_form(Graph& g, Value* x, int order) {
  Value* e = op(g, "erf", {order == 1 ? op(g, "mul", {cst(g, 0.70710678), x}) : op(g, "div", {x, cst(g, 1.4142135)})});
  Value* a = op(g, "add", {e, cst(g, 1.0)});
  switch (order) {
    case 0: return op(g, "mul", {op(g, "mul", {x, a}), cst(g, 0.5)});            // (x * a) * 0.5
    case 1: return op(g, "mul", {x, op(g, "mul", {a, cst(g, 0.5)})});            // x * (a * 0.5)
    case 2: return op(g, "mul", {op(g, "mul", {a, cst(g, 0.5)}), x});            // (a * 0.5) * x
    default: return op(g, "mul", {a, op(g, "mul", {cst(g, 0.5), x})});           // a * (0.5 * x)
  }
}

TEST(FusePatterns, DecomposedGeluErfForms) {
  for (int order : {0, 1, 2, 3}) {
    auto build = [order](Graph& g) {
      Value* x = g.add_input("x", DType::f32, fs({3, 40}));
      g.mark_output(gelu_erf_form(g, x, order));
    };
    Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fuse_patterns(g), 1); }, 1e-6, "gelu erf");
    ASSERT_EQ(g.nodes().size(), 1u) << order;
    EXPECT_EQ(g.nodes()[0]->op_name(), "gelu");
  }
}

TEST(FusePatterns, DecomposedGeluTanhFormThenLinearAct) {
  auto build = [](Graph& g) {
    Generator gen(2);
    Value* in = g.add_input("x", DType::f32, fs({4, 16}));
    Value* x = op(g, "linear", {in, g.add_constant("w", randn({24, 16}, gen)), g.add_constant("b", randn({24}, gen))});
    Value* cube = op(g, "pow", {x, cst(g, 3.0)});
    Value* inner = op(g, "add", {x, op(g, "mul", {cube, cst(g, 0.044715)})});
    Value* t = op(g, "tanh", {op(g, "mul", {cst(g, 0.7978845608), inner})});
    Value* a = op(g, "add", {cst(g, 1.0), t});
    g.mark_output(named_op(g, "y", "mul", {op(g, "mul", {cst(g, 0.5), x}), a}));
  };
  Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fuse_patterns(g), 2); }, 1e-5, "gelu tanh");
  ASSERT_EQ(g.nodes().size(), 1u);
  EXPECT_EQ(g.nodes()[0]->op_name(), "linear_act");
  EXPECT_EQ(g.nodes()[0]->attr_string("activation"), "gelu_tanh");
  EXPECT_EQ(g.outputs()[0]->name, "y");
}

TEST(FusePatterns, DecomposedLayerNorm) {
  for (int variant = 0; variant < 3; ++variant) {
    auto build = [variant](Graph& g) {
      Generator gen(4);
      Value* x = g.add_input("x", DType::f32, fs({2, 3, 16}));
      Attrs axes{{"axes", std::vector<int64_t>{-1}}, {"keepdims", int64_t{1}}};
      Value* mu = op(g, "mean", {x}, axes);
      Value* d = op(g, "sub", {x, mu});
      Value* sq = variant == 1 ? op(g, "mul", {d, d}) : op(g, "pow", {d, cst(g, 2.0)});
      Value* var = op(g, "mean", {sq, g.add_constant({}, i64({2}))}, {{"keepdims", int64_t{1}}});
      Value* n = op(g, "div", {d, op(g, "sqrt", {op(g, "add", {var, cst(g, 1e-5)})})});
      if (variant < 2) {
        n = op(g, "mul", {n, g.add_constant("gamma", randn({16}, gen))});
        n = op(g, "add", {n, g.add_constant("beta", randn({16}, gen))});
      }
      g.mark_output(named_op(g, "y", "relu", {n}));
    };
    Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fuse_patterns(g), 1); }, 2e-5, "layer norm");
    ASSERT_EQ(count_op(g, "layer_norm"), 1) << variant;
    EXPECT_EQ(g.nodes().size(), 2u);
    const Node* ln = g.outputs()[0]->producer->input(0)->producer;
    EXPECT_EQ(ln->inputs.size(), variant < 2 ? 3u : 1u);
    EXPECT_DOUBLE_EQ(ln->attr_float("epsilon"), static_cast<double>(1e-5f));
  }
}

// q, k, v (B, H, T, D) = (2, 3, 5, 8); mask: 0 none, 1 additive, 2 where.
void build_attention(Graph& g, int mask, bool mul_scale, double scale, std::vector<int64_t> k_perm) {
  Value* q = g.add_input("q", DType::f32, fs({2, 3, 5, 8}));
  Value* k = g.add_input("k", DType::f32, fs({2, 5, 3, 8}));  // (B, T, H, D): k_perm makes (B, H, D, T)
  Value* v = g.add_input("v", DType::f32, fs({2, 3, 5, 8}));
  Value* kt = g.add_op("permute", {k}, {{"perm", k_perm}}, DType::f32);
  Value* s = op(g, "matmul", {q, kt});
  s = mul_scale ? op(g, "mul", {s, cst(g, scale)}) : op(g, "div", {s, cst(g, 1.0 / scale)});
  if (mask == 1) {
    std::vector<float> m(25);
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 5; ++j) m[static_cast<size_t>(i * 5 + j)] = j <= i ? 0.f : -INFINITY;
    s = op(g, "add", {s, g.add_constant("mask", f32(m, {1, 1, 5, 5}))});
  } else if (mask == 2) {
    std::vector<uint8_t> keep(25);
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 5; ++j) keep[static_cast<size_t>(i * 5 + j)] = j <= i;
    Tensor cond = to_dtype_raw(Tensor::from_vector<uint8_t>(keep, {5, 5}), DType::b8);
    s = op(g, "where", {g.add_constant("keep", cond), s, cst(g, -1e9)});
  }
  Value* p = op(g, "softmax", {s}, {{"axis", int64_t{-1}}});
  g.mark_output(named_op(g, "o", "matmul", {p, v}));
}

TEST(FusePatterns, AttentionWithAndWithoutCausalMask) {
  const double scale = 1.0 / std::sqrt(8.0);
  for (int mask = 0; mask < 3; ++mask) {
    auto build = [&](Graph& g) { build_attention(g, mask, mask == 1, scale, {0, 2, 3, 1}); };
    Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fuse_patterns(g), 1); }, 1e-5, "attention");
    ASSERT_EQ(count_op(g, "scaled_dot_product_attention"), 1) << mask;
    EXPECT_EQ(g.outputs()[0]->producer->attr_int("causal"), mask != 0 ? 1 : 0);
    EXPECT_EQ(count_op(g, "permute"), 1);  // k (B, T, H, D) -> (B, H, T, D)
  }
  Graph wrong;
  build_attention(wrong, 0, true, 0.5, {0, 2, 3, 1});  // not 1/sqrt(D)
  EXPECT_EQ(fuse_patterns(wrong), 0);
}

TEST(FusePatterns, AttentionOnHeadMajorKeysNeedsNoPermute) {
  auto build = [](Graph& g) {
    Value* q = g.add_input("q", DType::f32, fs({1, 2, 4, 16}));
    Value* k = g.add_input("k", DType::f32, fs({1, 2, 6, 16}));
    Value* v = g.add_input("v", DType::f32, fs({1, 2, 6, 16}));
    Value* s = op(g, "matmul", {q, g.add_op("permute", {k}, {{"perm", std::vector<int64_t>{0, 1, 3, 2}}}, DType::f32)});
    Value* p = op(g, "softmax", {op(g, "div", {s, cst(g, 4.0)})}, {{"axis", int64_t{3}}});
    g.mark_output(op(g, "matmul", {p, v}));
  };
  Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fuse_patterns(g), 1); }, 1e-5, "attention T != S");
  EXPECT_EQ(g.nodes().size(), 1u);
}

// ---------------------------------------------------------------- fuse_elementwise

TEST(FuseElementwise, ChainWithBroadcastBecomesOneNodeBitExact) {
  auto build = [](Graph& g) {
    Generator gen(5);
    Value* x = g.add_input("x", DType::f32, fs({3, 37, 41}));  // 4551 elements: 5 tiles, a ragged one
    Value* b = g.add_input("b", DType::f32, fs({41}));
    Value* y = g.add_op("add", {x, b}, {}, DType::f32, fs({3, 37, 41}));
    y = g.add_op("mul", {y, g.add_constant("s", randn({37, 1}, gen))}, {}, DType::f32, fs({3, 37, 41}));
    y = g.add_op("sub", {cst(g, 0.25), y}, {}, DType::f32, fs({3, 37, 41}));
    y = g.add_op("div", {y, cst(g, 3.0)}, {}, DType::f32, fs({3, 37, 41}));
    y = g.add_op("neg", {y}, {}, DType::f32, fs({3, 37, 41}));
    g.mark_output(named_op(g, "y", "relu", {y}, {}, DType::f32, fs({3, 37, 41})));
  };
  Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fuse_elementwise(g), 6); }, 0, "chain");
  ASSERT_EQ(g.nodes().size(), 1u);
  const Node& n = *g.nodes()[0];
  EXPECT_EQ(n.op_name(), "fused_elementwise");
  EXPECT_EQ(n.inputs.size(), 3u);  // x, b, s; the scalars are immediates
  EXPECT_EQ(n.attr_int("rank"), 3);
  const auto& prog = std::get<std::vector<std::string>>(n.attrs.at("program"));
  ASSERT_EQ(prog.size(), 6u);
  EXPECT_EQ(prog[0], "t0 = add in0 in1");
  EXPECT_EQ(prog[2], "t2 = sub #0.25 t1");
}

TEST(FuseElementwise, TranscendentalsWithinTolerance) {
  auto build = [](Graph& g) {
    Value* x = g.add_input("x", DType::f32, fs({2, 2000}));
    Value* y = x;
    for (const char* name : {"exp", "tanh", "sigmoid", "erf", "gelu", "silu", "sin", "softplus", "abs", "sqrt", "log"})
      y = g.add_op(name, {y}, {}, DType::f32, fs({2, 2000}));
    y = g.add_op("leaky_relu", {y}, {{"alpha", 0.1}}, DType::f32, fs({2, 2000}));
    y = g.add_op("clamp", {y, cst(g, -0.5)}, {}, DType::f32, fs({2, 2000}));
    y = g.add_op("gelu", {y}, {{"approximate", std::string("tanh")}}, DType::f32, fs({2, 2000}));
    g.mark_output(g.add_op("pow", {y, cst(g, 2.0)}, {}, DType::f32, fs({2, 2000})));
  };
  Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fuse_elementwise(g), 15); }, 1e-6, "transcendental");
  EXPECT_EQ(g.nodes().size(), 1u);
}

TEST(FuseElementwise, SharedIntermediateBecomesAnExtraOutput) {
  auto build = [](Graph& g) {
    Value* x = g.add_input("x", DType::f32, fs({4, 10}));
    Value* e = named_op(g, "e", "exp", {x}, {}, DType::f32, fs({4, 10}));
    Value* s = g.add_op("softmax", {e}, {{"axis", int64_t{-1}}}, DType::f32, fs({4, 10}));
    Value* r = g.add_op("relu", {e}, {}, DType::f32, fs({4, 10}));
    g.mark_output(named_op(g, "y", "mul", {r, cst(g, 2.0)}, {}, DType::f32, fs({4, 10})));
    g.mark_output(s);
  };
  // 1e-6: generated code for exp is exact to the portable kernel, 1 ulp off the FMA builds.
  Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fuse_elementwise(g), 3); }, 1e-6, "shared");
  ASSERT_EQ(count_op(g, "fused_elementwise"), 1);
  const Node* f = g.outputs()[0]->producer;
  EXPECT_EQ(f->outputs.size(), 2u);  // y and e (read by softmax)
  EXPECT_EQ(f->outputs[0]->name, "e");  // in program order: e, then y
}

TEST(FuseElementwise, NoGroupThroughAnOutsideNode) {
  // c = a + softmax(a), a = exp(x): fusing exp and add would need softmax inside the group.
  auto build = [](Graph& g) {
    Value* x = g.add_input("x", DType::f32, fs({3, 5}));
    Value* a = g.add_op("exp", {x}, {}, DType::f32, fs({3, 5}));
    Value* s = g.add_op("softmax", {a}, {{"axis", int64_t{-1}}}, DType::f32, fs({3, 5}));
    Value* c = g.add_op("add", {a, s}, {}, DType::f32, fs({3, 5}));
    g.mark_output(g.add_op("neg", {c}, {}, DType::f32, fs({3, 5})));
  };
  Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fuse_elementwise(g), 2); }, 0, "cycle");
  EXPECT_EQ(count_op(g, "exp"), 1);
  EXPECT_EQ(count_op(g, "fused_elementwise"), 1);  // add + neg
}

TEST(FuseElementwise, ShapesAreInferredAndDifferentShapesStayApart) {
  auto build = [](Graph& g) {
    Value* x = g.add_input("x", DType::f32, {Dim::named("N"), Dim::fixed(6)});
    Value* b = g.add_input("b", DType::f32, fs({6}));
    Value* eb = op(g, "exp", {b});                         // (6): its own shape, not fused with (N, 6)
    Value* y = op(g, "tanh", {op(g, "add", {x, eb})});     // shapes inferred: (N, 6)
    Value* z = op(g, "mul", {y, g.add_constant({}, Tensor::ones({1, 1, 1}))});  // (1, N, 6)
    g.mark_output(op(g, "sigmoid", {z}));
  };
  Graph ref, g;
  build(ref);
  build(g);
  EXPECT_EQ(fuse_elementwise(g), 4);  // add + tanh, and apart (another shape) mul + sigmoid
  EXPECT_EQ(count_op(g, "fused_elementwise"), 2);
  EXPECT_EQ(count_op(g, "exp"), 1);
  verify(g, "test");
  Generator gen(3);
  std::vector<Tensor> in{randn({5, 6}, gen), randn({6}, gen)};
  expect_close(Executor(g).run(in), Executor(ref).run(in), 1e-6, "symbolic");
}

TEST(FuseElementwise, StridedAndBroadcastInputsAreGathered) {
  // The interpreter run directly on views: a transposed input and a row-broadcast one.
  Node n;
  n.op = ops::find_op("fused_elementwise");
  n.name = "f";
  n.attrs["program"] = std::vector<std::string>{"t0 = mul in0 in1", "t1 = add t0 #1", "t2 = maximum t1 in2"};
  n.attrs["outputs"] = std::vector<std::string>{"t2", "t0"};
  n.attrs["rank"] = int64_t{2};
  Generator gen(9);
  Tensor a = randn({700, 3}, gen), b = randn({3}, gen), c = randn({1, 700}, gen);
  Tensor at = ops::transpose(a, 0, 1);  // (3, 700), strided
  std::vector<Tensor> in{at, c, ops::reshape(b, {3, 1})};
  n.inputs = {nullptr, nullptr, nullptr};
  std::vector<Tensor> out = kernel_table().find("fused_elementwise")(n, in);
  ASSERT_EQ(out.size(), 2u);
  ASSERT_EQ(out[0].shape(), (Shape{3, 700}));
  std::vector<float> av = a.to_vector<float>(), bv = b.to_vector<float>(), cv = c.to_vector<float>();
  std::vector<float> o0 = out[0].to_vector<float>(), o1 = out[1].to_vector<float>();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 700; ++j) {
      float t0 = av[static_cast<size_t>(j * 3 + i)] * cv[static_cast<size_t>(j)];
      float t1 = t0 + 1.0f;
      EXPECT_EQ(o1[static_cast<size_t>(i * 700 + j)], t0);
      EXPECT_EQ(o0[static_cast<size_t>(i * 700 + j)], std::max(t1, bv[static_cast<size_t>(i)]));
    }
}

TEST(FuseElementwise, MalformedProgramsNameTheNode) {
  Node n;
  n.op = ops::find_op("fused_elementwise");
  n.name = "bad_node";
  n.attrs["outputs"] = std::vector<std::string>{"t0"};
  n.inputs = {nullptr};
  for (std::vector<std::string> prog : std::vector<std::vector<std::string>>{
           {"t0 = frob in0"}, {"t0 = add in0"}, {"t0 = add in0 in5"}, {"t1 = neg in0"}, {"t0 = neg t0"},
           {"t0 = leaky_relu in0 in0"}, {"t0 = add in0 #x"}}) {
    n.attrs["program"] = prog;
    try {
      fused::parse(n);
      ADD_FAILURE() << prog[0];
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("bad_node"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(fused::immediate(0.1f), "#0.100000001");
  n.attrs["program"] = std::vector<std::string>{"t0 = clamp in0 #-inf #2.5"};
  EXPECT_EQ(fused::parse(n).code[0].args[1].imm, -INFINITY);
}

// ---------------------------------------------------------------- reductions with fused producers

// The program lines of a fused node.
const std::vector<std::string>& program_of(const Node& n) {
  return std::get<std::vector<std::string>>(n.attrs.at("program"));
}
const Node* only_reduction_node(const Graph& g) {
  const Node* found = nullptr;
  for (const auto& n : g.nodes())
    if (n->op_name() == "fused_elementwise" && n->has_attr("reduce_axes")) {
      EXPECT_EQ(found, nullptr) << "more than one reduction program";
      found = n.get();
    }
  return found;
}

// A decomposed RMS norm: x * rsqrt(mean(x * x) + eps) * w. The square, the mean and the epilogue
// (+ eps, rsqrt) become one reduction program; the tail, which reads x again, is another fused
// node. The arithmetic is the eager ops' in their order: bitwise equal to the unfused graph.
TEST(FuseReduction, RmsNormBecomesOneReductionProgramAndATail) {
  auto build = [](Graph& g) {
    Generator gen(3);
    const SymShape s = fs({4, 9, 257}), r = fs({4, 9, 1});
    Value* x = g.add_input("x", DType::f32, s);
    Value* sq = g.add_op("mul", {x, x}, {}, DType::f32, s);
    Value* m = g.add_op("mean", {sq}, {{"axes", std::vector<int64_t>{-1}}, {"keepdims", int64_t{1}}}, DType::f32, r);
    Value* inv = g.add_op("rsqrt", {g.add_op("add", {m, cst(g, 1e-5)}, {}, DType::f32, r)}, {}, DType::f32, r);
    Value* y = g.add_op("mul", {x, inv}, {}, DType::f32, s);
    g.mark_output(named_op(g, "y", "mul", {y, g.add_constant("w", randn({257}, gen))}, {}, DType::f32, s));
  };
  Graph g = check_pass(build, [](Graph& g) { EXPECT_EQ(fuse_elementwise(g), 6); }, 0, "rms norm");
  ASSERT_EQ(g.nodes().size(), 2u);
  const Node* red = only_reduction_node(g);
  ASSERT_NE(red, nullptr);
  EXPECT_EQ(program_of(*red), (std::vector<std::string>{"t0 = mul in0 in0", "t1 = reduce_mean t0",
                                                        "t2 = add t1 #9.99999975e-06", "t3 = rsqrt t2"}));
  EXPECT_EQ(red->attr_int("reduce_axes"), 1);
  EXPECT_EQ(red->attr_int("keepdims"), 1);
  EXPECT_EQ(red->attr_int("rank"), 3);
}

// Every reduce kind over trailing axes (one or two, keepdims either way, axes as an attribute or
// a constant input, negative or not) of a chain with broadcast inputs, on awkward row lengths
// (1, 7, 33, 257, 1000, and 2500: three blocks of the sum): bitwise equal to the unfused graph.
TEST(FuseReduction, EveryKindOnAwkwardRowsMatchesTheUnfusedGraphBitwise) {
  const char* kinds[] = {"sum", "mean", "amax", "min", "prod"};
  int variant = 0;
  for (int64_t len : {1, 7, 33, 257, 1000, 2500}) {
    for (const char* kind : kinds) {
      ++variant;
      const bool two_axes = variant % 3 == 0, keep = variant % 2 == 0, as_input = variant % 4 == 1;
      const Shape xs = two_axes ? Shape{3, 2, len} : Shape{5, len};
      Shape rs = xs;
      const size_t nred = two_axes ? 2 : 1;
      for (size_t d = rs.size() - nred; d < rs.size(); ++d) rs[d] = 1;
      if (!keep) rs.resize(rs.size() - nred);
      std::vector<int64_t> axes = two_axes ? std::vector<int64_t>{1, -1} : std::vector<int64_t>{-1};
      auto build = [&](Graph& g) {
        Generator gen(static_cast<uint64_t>(variant));
        Value* x = g.add_input("x", DType::f32, fs(xs));
        Value* b = g.add_input("b", DType::f32, fs({len}));  // broadcast along the rows
        // prod of many values under/overflows: keep them near 1 there.
        Value* y = g.add_op("mul", {x, cst(g, std::string(kind) == "prod" ? 0.01 : 1.0)}, {}, DType::f32, fs(xs));
        y = g.add_op("add", {y, b}, {}, DType::f32, fs(xs));
        if (std::string(kind) == "prod") y = g.add_op("add", {y, cst(g, 1.0)}, {}, DType::f32, fs(xs));
        else y = g.add_op("abs", {y}, {}, DType::f32, fs(xs));
        Attrs a{{"keepdims", int64_t{keep ? 1 : 0}}};
        std::vector<Value*> in{y};
        if (as_input) in.push_back(g.add_constant({}, Tensor::from_vector<int64_t>(axes)));
        else a["axes"] = axes;
        Value* r = g.add_op(kind, in, a, DType::f32, fs(rs));
        g.mark_output(named_op(g, "y", "sub", {r, cst(g, 0.5)}, {}, DType::f32, fs(rs)));
      };
      const std::string what = std::string(kind) + " len " + std::to_string(len);
      SCOPED_TRACE(what);
      Graph g = check_pass(build, [](Graph& g) { EXPECT_GT(fuse_elementwise(g), 0); }, 0, what);
      ASSERT_EQ(g.nodes().size(), 1u);
      const Node* red = only_reduction_node(g);
      ASSERT_NE(red, nullptr);
      EXPECT_EQ(red->attr_int("reduce_axes"), static_cast<int64_t>(nred));
      EXPECT_EQ(red->outputs[0]->name, "y");
    }
  }
}

// What must not fuse: reduced axes that are not trailing, an intermediate read twice (the
// producer stays apart; the epilogue still fuses), noop_with_empty_axes, axes computed at run
// time. Results match the unfused graph in every case.
TEST(FuseReduction, OnlyTrailingAxesAndPrivateIntermediatesFuse) {
  auto leading = [](Graph& g) {
    Value* x = g.add_input("x", DType::f32, fs({6, 5}));
    Value* e = g.add_op("exp", {x}, {}, DType::f32, fs({6, 5}));
    g.mark_output(g.add_op("sum", {e}, {{"axes", std::vector<int64_t>{0}}}, DType::f32, fs({1, 5})));
  };
  Graph g1 = check_pass(leading, [](Graph& g) { EXPECT_EQ(fuse_elementwise(g), 0); }, 0, "leading axis");
  EXPECT_EQ(count_op(g1, "sum"), 1);

  auto shared = [](Graph& g) {
    Value* x = g.add_input("x", DType::f32, fs({6, 40}));
    Value* e = g.add_op("abs", {g.add_op("neg", {x}, {}, DType::f32, fs({6, 40}))}, {}, DType::f32, fs({6, 40}));
    Value* m = g.add_op("amax", {e}, {{"axes", std::vector<int64_t>{1}}}, DType::f32, fs({6, 1}));
    g.mark_output(g.add_op("sqrt", {m}, {}, DType::f32, fs({6, 1})));
    g.mark_output(e);  // the producer's result is also a graph output
  };
  Graph g2 = check_pass(shared, [](Graph& g) { EXPECT_EQ(fuse_elementwise(g), 4); }, 0, "shared producer");
  ASSERT_EQ(count_op(g2, "fused_elementwise"), 2);  // neg + abs; amax + sqrt
  const Node* red = only_reduction_node(g2);
  ASSERT_NE(red, nullptr);
  EXPECT_EQ(program_of(*red), (std::vector<std::string>{"t0 = reduce_max in0", "t1 = sqrt t0"}));

  auto noop = [](Graph& g) {
    Value* x = g.add_input("x", DType::f32, fs({3, 4}));
    Value* e = g.add_op("exp", {x}, {}, DType::f32, fs({3, 4}));
    g.mark_output(g.add_op("sum", {e}, {{"noop_with_empty_axes", int64_t{1}}}, DType::f32, fs({3, 4})));
  };
  check_pass(noop, [](Graph& g) { EXPECT_EQ(fuse_elementwise(g), 0); }, 0, "noop");

  auto all_axes = [](Graph& g) {  // no axes: every dim, a single row
    Value* x = g.add_input("x", DType::f32, fs({3, 70}));
    Value* e = g.add_op("mul", {x, x}, {}, DType::f32, fs({3, 70}));
    g.mark_output(g.add_op("sum", {e}, {{"keepdims", int64_t{0}}}, DType::f32, fs({})));
  };
  Graph g4 = check_pass(all_axes, [](Graph& g) { EXPECT_EQ(fuse_elementwise(g), 2); }, 0, "all axes");
  ASSERT_NE(only_reduction_node(g4), nullptr);
  EXPECT_EQ(only_reduction_node(g4)->attr_int("reduce_axes"), 2);
}

// The reduction kernel run directly on views (a transposed input, a per-row broadcast one), both
// interpreted and generated, against a naive f64 loop; two outputs (the sum and its sqrt).
TEST(FuseReduction, InterpreterOnStridedAndBroadcastInputsMatchesANaiveLoop) {
  Node n;
  n.op = ops::find_op("fused_elementwise");
  n.name = "f";
  n.attrs["program"] = std::vector<std::string>{"t0 = sub in0 in1", "t1 = mul t0 t0", "t2 = reduce_sum t1",
                                                "t3 = sqrt t2"};
  n.attrs["outputs"] = std::vector<std::string>{"t3", "t2"};
  n.attrs["rank"] = int64_t{2};
  n.attrs["reduce_axes"] = int64_t{1};
  n.attrs["keepdims"] = int64_t{0};
  n.inputs = {nullptr, nullptr};
  Generator gen(4);
  Tensor a = randn({1500, 3}, gen), c = randn({3, 1}, gen);
  std::vector<Tensor> in{ops::transpose(a, 0, 1), c};  // (3, 1500) strided; (3, 1) broadcast along rows
  for (auto mode : {codegen::Mode::off, codegen::Mode::on}) {
    codegen::set_mode_override(mode);
    std::vector<Tensor> out = kernel_table().find("fused_elementwise")(n, in);
    codegen::set_mode_override(std::nullopt);
    ASSERT_EQ(out.size(), 2u);
    ASSERT_EQ(out[0].shape(), (Shape{3}));
    std::vector<float> av = a.to_vector<float>(), cv = c.to_vector<float>();
    for (int i = 0; i < 3; ++i) {
      double want = 0;
      for (int j = 0; j < 1500; ++j) {
        float d = av[static_cast<size_t>(j * 3 + i)] - cv[static_cast<size_t>(i)];
        want += static_cast<double>(d * d);
      }
      EXPECT_NEAR(out[1].to_vector<float>()[static_cast<size_t>(i)], want, 1e-5 * want);
      EXPECT_EQ(out[0].to_vector<float>()[static_cast<size_t>(i)], std::sqrt(out[1].to_vector<float>()[static_cast<size_t>(i)]));
    }
  }
}

TEST(FuseReduction, MalformedReductionProgramsNameTheNode) {
  Node n;
  n.op = ops::find_op("fused_elementwise");
  n.name = "bad_reduction";
  n.inputs = {nullptr};
  n.attrs["rank"] = int64_t{2};
  n.attrs["reduce_axes"] = int64_t{1};
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"t0 = reduce_sum in0", "t1 = reduce_max t0"}, "t1"},      // two reductions
      {{"t0 = neg in0", "t1 = reduce_sum t0", "t2 = add t1 t0"}, "t2"},  // epilogue reads an element value
      {{"t0 = reduce_sum in0", "t1 = add t0 in0"}, "t1"},        // epilogue reads an input
      {{"t0 = neg in0", "t1 = reduce_sum t0"}, "t0"},            // output computed per element
  };
  for (const auto& [prog, out] : cases) {
    n.attrs["program"] = prog;
    n.attrs["outputs"] = std::vector<std::string>{out};
    try {
      fused::parse(n);
      ADD_FAILURE() << prog.back();
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("bad_reduction"), std::string::npos) << e.what();
    }
  }
  n.attrs["program"] = std::vector<std::string>{"t0 = reduce_sum in0"};
  n.attrs["outputs"] = std::vector<std::string>{"t0"};
  n.attrs["reduce_axes"] = int64_t{3};  // more than the rank
  EXPECT_THROW(fused::parse(n), ValueError);
  // An elementwise program with reduce_axes is malformed too.
  n.attrs["program"] = std::vector<std::string>{"t0 = neg in0"};
  n.attrs["reduce_axes"] = int64_t{1};
  EXPECT_THROW(fused::parse(n), ValueError);
}

}  // namespace
}  // namespace kiln::graph
