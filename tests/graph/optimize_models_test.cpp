// optimize() over whole model blocks written as exporters write them (a pre-norm transformer
// block as PyTorch exports it below opset 17; a conv/bn/relu stack): every pass gets its turn, the
// result has the expected fused ops, and it computes what the unoptimised graph computes.
#include "pass_test_util.h"

namespace kiln::graph {
namespace {

using namespace testing;

struct ModelBuilder {
  Graph& g;
  Generator gen{21};

  Value* in(const std::string& name, const Shape& s) { return g.add_input(name, DType::f32, fixed_shape(s)); }
  Value* c(double v) { return g.add_constant({}, Tensor::scalar(v)); }
  Value* w(const Shape& s, double scale = 0.3) { return g.add_constant({}, ops_mul(randn(s, gen), scale)); }
  Value* op(std::string_view name, std::vector<Value*> ins, const Shape& s, Attrs a = {}) {
    return g.add_op(name, std::move(ins), std::move(a), DType::f32, fixed_shape(s));
  }
  static Tensor ops_mul(const Tensor& t, double s) {
    std::vector<float> v = t.to_vector<float>();
    for (float& e : v) e = static_cast<float>(e * s);
    return Tensor::from_vector<float>(v, t.shape());
  }

  // PyTorch's LayerNorm below opset 17: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add.
  Value* layer_norm(Value* x, const Shape& s) {
    Shape red = s;
    red.back() = 1;
    Attrs axes{{"axes", std::vector<int64_t>{-1}}, {"keepdims", int64_t{1}}};
    Value* d = op("sub", {x, op("mean", {x}, red, axes)}, s);
    Value* var = op("mean", {op("pow", {d, c(2.0)}, s)}, red, axes);
    Value* n = op("div", {d, op("sqrt", {op("add", {var, c(1e-5)}, red)}, red)}, s);
    return op("add", {op("mul", {n, w({s.back()})}, s), w({s.back()})}, s);
  }
  // nn.Linear on a 3-d input: MatMul + Add.
  Value* linear(Value* x, const Shape& s, int64_t out) {
    Shape o = s;
    o.back() = out;
    return op("add", {op("matmul", {x, w({s.back(), out})}, o), w({out})}, o);
  }
  // nn.GELU(): Div, Erf, Add, Mul, Mul.
  Value* gelu(Value* x, const Shape& s) {
    Value* e = op("erf", {op("div", {x, c(1.4142135623730951)}, s)}, s);
    return op("mul", {op("mul", {x, op("add", {e, c(1.0)}, s)}, s), c(0.5)}, s);
  }
};

constexpr int64_t B = 2, T = 6, C = 16, H = 2, D = 8;

void transformer_block(Graph& g) {
  ModelBuilder b{g};
  Value* x = b.in("x", {B, T, C});
  Value* h = b.layer_norm(x, {B, T, C});
  auto heads = [&](Value* v, std::vector<int64_t> perm, const Shape& s) {
    Value* r = b.op("reshape", {v, g.add_constant({}, Tensor::from_vector<int64_t>({B, T, H, D}))}, {B, T, H, D});
    return b.op("permute", {r}, s, {{"perm", perm}});
  };
  Value* q = heads(b.linear(h, {B, T, C}, C), {0, 2, 1, 3}, {B, H, T, D});
  Value* kt = heads(b.linear(h, {B, T, C}, C), {0, 2, 3, 1}, {B, H, D, T});
  Value* v = heads(b.linear(h, {B, T, C}, C), {0, 2, 1, 3}, {B, H, T, D});
  Value* s = b.op("div", {b.op("matmul", {q, kt}, {B, H, T, T}), b.c(std::sqrt(double(D)))}, {B, H, T, T});
  std::vector<float> mask(T * T);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < T; ++j) mask[static_cast<size_t>(i * T + j)] = j <= i ? 0.f : -INFINITY;
  s = b.op("add", {s, g.add_constant("mask", Tensor::from_vector<float>(mask, {1, 1, T, T}))}, {B, H, T, T});
  Value* p = b.op("softmax", {s}, {B, H, T, T}, {{"axis", int64_t{-1}}});
  Value* o = b.op("permute", {b.op("matmul", {p, v}, {B, H, T, D})}, {B, T, H, D}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}});
  o = b.op("reshape", {o, g.add_constant({}, Tensor::from_vector<int64_t>({B, T, C}))}, {B, T, C});
  Value* r = b.op("add", {x, b.linear(o, {B, T, C}, C)}, {B, T, C});
  Value* m = b.gelu(b.linear(b.layer_norm(r, {B, T, C}), {B, T, C}, 4 * C), {B, T, 4 * C});
  g.mark_output(named_op(g, "y", "add", {r, b.linear(m, {B, T, 4 * C}, C)}, {}, DType::f32, fixed_shape({B, T, C})));
}

TEST(OptimizeModels, TransformerBlockFusesIntoItsBigOps) {
  Graph g = check_optimize(transformer_block, 2e-5);
  EXPECT_EQ(count_op(g, "layer_norm"), 2);
  EXPECT_EQ(count_op(g, "scaled_dot_product_attention"), 1);
  EXPECT_EQ(count_op(g, "linear"), 5);
  EXPECT_EQ(count_op(g, "linear_act"), 1);
  for (const char* gone : {"matmul", "softmax", "erf", "mean", "div", "sqrt", "pow", "mul"})
    EXPECT_EQ(count_op(g, gone), 0) << gone;
  EXPECT_EQ(g.nodes().back()->outputs[0]->name, "y");
}

void conv_stack(Graph& g) {
  ModelBuilder b{g};
  Value* x = b.in("x", {2, 3, 10, 10});
  auto conv_bn = [&](Value* in, int64_t cin, int64_t cout) {
    Value* y = b.op("conv2d", {in, b.w({cout, cin, 3, 3}), b.w({cout})}, {2, cout, 10, 10},
                    {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
    Value* var = g.add_constant({}, uniform({cout}, 0.5, 1.5, b.gen));
    return b.op("batch_norm", {y, b.w({cout}), b.w({cout}), b.w({cout}), var}, {2, cout, 10, 10}, {{"epsilon", 1e-5}});
  };
  Value* h = b.op("relu", {conv_bn(x, 3, 8)}, {2, 8, 10, 10});
  h = b.op("relu", {b.op("add", {conv_bn(h, 8, 8), h}, {2, 8, 10, 10})}, {2, 8, 10, 10});
  h = b.op("mean", {h}, {2, 8, 1, 1}, {{"axes", std::vector<int64_t>{2, 3}}, {"keepdims", int64_t{1}}});
  h = b.op("flatten", {h}, {2, 8}, {{"start_dim", int64_t{1}}});
  g.mark_output(named_op(g, "logits", "linear", {h, b.w({4, 8}), b.w({4})}, {}, DType::f32, fixed_shape({2, 4})));
}

TEST(OptimizeModels, ConvBatchNormReluStack) {
  Graph g = check_optimize(conv_stack, 2e-5);
  EXPECT_EQ(count_op(g, "batch_norm"), 0);
  EXPECT_EQ(count_op(g, "conv2d"), 2);
  EXPECT_EQ(count_op(g, "relu"), 0);          // one into the conv, one fused with the residual add
  EXPECT_EQ(count_op(g, "fused_elementwise"), 1);
}

}  // namespace
}  // namespace kiln::graph
