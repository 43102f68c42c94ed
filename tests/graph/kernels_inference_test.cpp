// Tests for the graph kernels of the inference ops (graph/kernels_inference.cpp): each kernel
// reads its ONNX attributes (with ONNX's defaults) and tensor inputs in ONNX order, and bad
// nodes fail naming the node. The ops' numerics are tested in tests/ops/inference_*_test.cpp.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/graph/kernels.h"

namespace kiln::graph {
namespace {

Node make_node(std::string_view op, std::map<std::string, Attr, std::less<>> attrs = {}) {
  Node n;
  n.op = ops::find_op(op);
  EXPECT_NE(n.op, nullptr) << op;
  n.name = std::string(op) + "_node";
  n.attrs = std::move(attrs);
  return n;
}

std::vector<Tensor> run(const Node& n, const std::vector<Tensor>& inputs) {
  KernelFn fn = kernel_table().find(n.op_name());
  EXPECT_NE(fn, nullptr) << n.op_name();
  return fn(n, inputs);
}

Tensor run1(const Node& n, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> out = run(n, inputs);
  EXPECT_EQ(out.size(), 1u);
  return out.at(0);
}

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

void expect_vals(const Tensor& t, const std::vector<double>& want, double tol = 1e-6) {
  std::vector<double> got = vals(t);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << i;
}

template <typename F>
void expect_node_error(F f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

Tensor f32(const std::vector<float>& v) { return Tensor::from_vector<float>(v); }
Tensor i64(const std::vector<int64_t>& v) { return Tensor::from_vector<int64_t>(v); }

TEST(InferenceKernels, EveryInferenceOpHasAKernel) {
  for (const char* op : {"erf", "leaky_relu", "hard_sigmoid", "hard_swish", "elu", "selu", "softplus", "softsign",
                         "reciprocal", "floor", "ceil", "round", "sign", "sin", "cos", "logical_and", "logical_or",
                         "logical_xor", "mod", "prelu", "tile", "range", "cumsum", "einsum", "shape_of",
                         "constant_of_shape"})
    EXPECT_NE(kernel_table().find(op), nullptr) << op;
}

TEST(InferenceKernels, UnaryOpsWithoutAttributes) {
  Tensor x = f32({-1.5f, 0.5f, 2.5f});
  expect_vals(run1(make_node("floor"), {x}), {-2, 0, 2}, 0);
  expect_vals(run1(make_node("ceil"), {x}), {-1, 1, 3}, 0);
  expect_vals(run1(make_node("round"), {x}), {-2, 0, 2}, 0);
  expect_vals(run1(make_node("sign"), {x}), {-1, 1, 1}, 0);
  expect_vals(run1(make_node("reciprocal"), {x}), {-1 / 1.5, 2, 0.4});
  expect_vals(run1(make_node("softsign"), {x}), {-0.6, 1 / 3.0, 2.5 / 3.5});
  expect_vals(run1(make_node("softplus"), {x}), {std::log1p(std::exp(-1.5)), std::log1p(std::exp(0.5)),
                                                 std::log1p(std::exp(2.5))});
  expect_vals(run1(make_node("erf"), {x}), {std::erf(-1.5), std::erf(0.5), std::erf(2.5)});
  expect_vals(run1(make_node("sin"), {x}), {std::sin(-1.5), std::sin(0.5), std::sin(2.5)});
  expect_vals(run1(make_node("cos"), {x}), {std::cos(-1.5), std::cos(0.5), std::cos(2.5)});
  expect_vals(run1(make_node("hard_swish"), {x}), {-1.5 * 0.25, 0.5 * (0.5 / 6 + 0.5), 2.5 * (2.5 / 6 + 0.5)});
}

TEST(InferenceKernels, ActivationAttributesAndDefaults) {
  Tensor x = f32({-1, 0, 1});
  expect_vals(run1(make_node("leaky_relu"), {x}), {-0.01, 0, 1});
  expect_vals(run1(make_node("leaky_relu", {{"alpha", 0.1}}), {x}), {-0.1, 0, 1});
  expect_vals(run1(make_node("hard_sigmoid"), {x}), {0.3, 0.5, 0.7});
  expect_vals(run1(make_node("hard_sigmoid", {{"alpha", 0.5}, {"beta", 0.6}}), {x}), {0.1, 0.6, 1.0});
  expect_vals(run1(make_node("elu"), {x}), {std::expm1(-1.0), 0, 1});
  expect_vals(run1(make_node("elu", {{"alpha", 2.0}}), {x}), {-1.2642411, 0, 1});
  expect_vals(run1(make_node("selu"), {x}), {-1.1113307, 0, 1.050701});
  expect_vals(run1(make_node("selu", {{"alpha", 2.0}, {"gamma", 3.0}}), {x}), {-3.79272318, 0, 3});
  // An integer-valued attribute reads as a float too (ONNX files are not always careful).
  expect_vals(run1(make_node("elu", {{"alpha", int64_t{2}}}), {x}), {-1.2642411, 0, 1});
}

TEST(InferenceKernels, BinaryOps) {
  Tensor a = Tensor::from_vector<bool>({false, true}, {2, 1}), b = Tensor::from_vector<bool>({false, true});
  expect_vals(run1(make_node("logical_and"), {a, b}), {0, 0, 0, 1}, 0);
  expect_vals(run1(make_node("logical_or"), {a, b}), {0, 1, 1, 1}, 0);
  expect_vals(run1(make_node("logical_xor"), {a, b}), {0, 1, 1, 0}, 0);
  Tensor x = i64({-4, 7, 5, 4, -7, 8}), y = i64({2, -3, 8, -2, 3, 5});
  expect_vals(run1(make_node("mod"), {x, y}), {0, -2, 5, 0, 2, 3}, 0);
  expect_vals(run1(make_node("mod", {{"fmod", int64_t{1}}}), {x, y}), {0, 1, 5, 0, -1, 3}, 0);
  expect_node_error([&] { run1(make_node("mod", {{"fmod", int64_t{2}}}), {x, y}); }, "fmod must be 0 or 1");
  Tensor px = Tensor::from_vector<float>({-2, 3, -4, 5}, {2, 2}), slope = Tensor::from_vector<float>({0.5f, 0.25f}, {2});
  expect_vals(run1(make_node("prelu"), {px, slope}), {-1, 3, -2, 5});
}

TEST(InferenceKernels, TileRangeCumsum) {
  Tensor x = Tensor::from_vector<float>({0, 1, 2, 3}, {2, 2});
  Tensor t = run1(make_node("tile"), {x, i64({1, 2})});
  EXPECT_EQ(t.shape(), (Shape{2, 4}));
  expect_vals(t, {0, 1, 0, 1, 2, 3, 2, 3}, 0);
  Tensor r = run1(make_node("range"), {Tensor::scalar(10, DType::i32), Tensor::scalar(6, DType::i32),
                                       Tensor::scalar(-3, DType::i32)});
  EXPECT_EQ(r.dtype(), DType::i32);
  expect_vals(r, {10, 7}, 0);
  Tensor c = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor axis = Tensor::scalar(1, DType::i32);
  expect_vals(run1(make_node("cumsum"), {c, axis}), {1, 3, 6, 4, 9, 15}, 0);
  expect_vals(run1(make_node("cumsum", {{"exclusive", int64_t{1}}, {"reverse", int64_t{1}}}), {c, axis}),
              {5, 3, 0, 11, 6, 0}, 0);
  expect_vals(run1(make_node("cumsum"), {c, Tensor::scalar(-2, DType::i64)}), {1, 2, 3, 5, 7, 9}, 0);
  expect_node_error([&] { run1(make_node("cumsum"), {c, Tensor::scalar(2, DType::i64)}); }, "cumsum_node");
  expect_node_error([&] { run1(make_node("cumsum"), {c, Tensor::scalar(1.0)}); }, "axis");
  expect_node_error([&] { run1(make_node("tile"), {x}); }, "repeats");
}

TEST(InferenceKernels, EinsumShapeOfConstantOfShape) {
  Tensor a = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2}), b = Tensor::from_vector<float>({5, 6, 7, 8}, {2, 2});
  expect_vals(run1(make_node("einsum", {{"equation", std::string("ij,jk->ik")}}), {a, b}), {19, 22, 43, 50}, 0);
  expect_vals(run1(make_node("einsum", {{"equation", std::string("ii")}}), {a}), {5}, 0);
  expect_node_error([&] { run1(make_node("einsum"), {a}); }, "equation");

  Tensor x = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(run1(make_node("shape_of"), {x}).to_vector<int64_t>(), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(run1(make_node("shape_of", {{"start", int64_t{-2}}}), {x}).to_vector<int64_t>(),
            (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(run1(make_node("shape_of", {{"start", int64_t{0}}, {"end", int64_t{1}}}), {x}).to_vector<int64_t>(),
            (std::vector<int64_t>{2}));

  Tensor z = run1(make_node("constant_of_shape"), {i64({2, 2})});
  EXPECT_EQ(z.dtype(), DType::f32);
  expect_vals(z, {0, 0, 0, 0}, 0);
  Tensor v = run1(make_node("constant_of_shape", {{"value", Tensor::from_vector<int32_t>({7})}}), {i64({3})});
  EXPECT_EQ(v.dtype(), DType::i32);
  expect_vals(v, {7, 7, 7}, 0);
}

TEST(InferenceKernels, MissingInputsNameTheNode) {
  expect_node_error([] { run1(make_node("erf"), {}); }, "erf_node");
  expect_node_error([] { run1(make_node("mod"), {i64({1})}); }, "input 1 (B) is missing");
  expect_node_error([] { run1(make_node("range"), {Tensor::scalar(0), Tensor(), Tensor::scalar(1)}); }, "limit");
  expect_node_error([] { run1(make_node("einsum", {{"equation", std::string("i")}}), {}); }, "at least one operand");
}

}  // namespace
}  // namespace kiln::graph
