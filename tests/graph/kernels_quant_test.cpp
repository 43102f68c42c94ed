// Tests for graph/kernels_quant.cpp: the kernels of the int8 ops and of conv_transpose2d,
// instance_norm, resize and pad_mode read ONNX inputs (in ONNX order, optional ones absent) and
// attributes (auto_pad, output_shape, opset-10 Resize, Pad's attribute form, axes). The ops'
// numerics are tested in tests/ops/inference_nn_test.cpp and tests/ops/quant_ops_test.cpp.
#include <gtest/gtest.h>

#include "kiln/graph/kernels.h"
#include "kiln/ops/inference_nn.h"
#include "kiln/ops/quant_ops.h"

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

void expect_same(const Tensor& got, const Tensor& want) {
  EXPECT_EQ(got.dtype(), want.dtype());
  ASSERT_EQ(got.shape(), want.shape());
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], w[i], 1e-5) << i;
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

Tensor i64(const std::vector<int64_t>& v) { return Tensor::from_vector<int64_t>(v); }
Tensor f32(const std::vector<float>& v) { return Tensor::from_vector<float>(v); }
Tensor arange_f32(const Shape& s) {
  Tensor t = Tensor::empty(s, DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(i % 7) - 3.0f;
  return t;
}

TEST(QuantKernels, EveryOpHasAKernel) {
  for (const char* op : {"quantize_linear", "dequantize_linear", "dynamic_quantize_linear", "matmul_integer",
                         "conv_integer", "qlinear_matmul", "qlinear_conv", "conv_transpose2d", "instance_norm",
                         "resize", "pad_mode"})
    EXPECT_NE(kernel_table().find(op), nullptr) << op;
}

TEST(QuantKernels, QuantizeDequantizeAxisAndOptionalZeroPoint) {
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2});
  Tensor q = run1(make_node("quantize_linear", {{"axis", int64_t{0}}}), {x, f32({1, 2}), Tensor()});
  expect_same(q, ops::quantize_linear(x, f32({1, 2}), Tensor(), 0));
  EXPECT_EQ(q.dtype(), DType::u8);
  Tensor d = run1(make_node("dequantize_linear"), {q, Tensor::scalar(0.5)});
  expect_same(d, ops::dequantize_linear(q, Tensor::scalar(0.5)));
  expect_node_error([&] { run1(make_node("quantize_linear"), {x}); }, "y_scale");
}

TEST(QuantKernels, DynamicQuantizeHasThreeOutputs) {
  std::vector<Tensor> out = run(make_node("dynamic_quantize_linear"), {f32({0, 2, -3, -2.5f, 1.34f, 0.5f})});
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].dtype(), DType::u8);
  EXPECT_EQ(out[1].dtype(), DType::f32);
  EXPECT_EQ(out[2].item(), 153.0);
}

TEST(QuantKernels, ConvIntegerAutoPad) {
  Tensor x = Tensor::full({1, 1, 5, 6}, 3, DType::u8), w = Tensor::full({2, 1, 2, 3}, 2, DType::u8);
  Tensor zp = Tensor::scalar(1, DType::u8);
  // SAME_UPPER with stride 2: out = ceil(in / 2) = (3, 3); total pads (1, 1) go to the end.
  ops::QuantConvOptions o;
  o.strides = {2, 2};
  o.pads = {0, 0, 1, 1};
  Tensor upper = run1(make_node("conv_integer", {{"auto_pad", std::string("SAME_UPPER")}, {"strides", std::vector<int64_t>{2, 2}},
                                                 {"kernel_shape", std::vector<int64_t>{2, 3}}}),
                      {x, w, zp});
  expect_same(upper, ops::conv_integer(x, w, zp, Tensor(), o));
  EXPECT_EQ(upper.shape(), (Shape{1, 2, 3, 3}));
  o.pads = {1, 1, 0, 0};
  expect_same(run1(make_node("conv_integer", {{"auto_pad", std::string("SAME_LOWER")}, {"strides", std::vector<int64_t>{2, 2}}}),
                   {x, w, zp}),
              ops::conv_integer(x, w, zp, Tensor(), o));
  o.pads = {};
  expect_same(run1(make_node("conv_integer", {{"auto_pad", std::string("VALID")}, {"pads", std::vector<int64_t>{1, 1, 1, 1}},
                                              {"strides", std::vector<int64_t>{2, 2}}}),
                   {x, w}),
              ops::conv_integer(x, w, Tensor(), Tensor(), o));
  expect_node_error([&] { run1(make_node("conv_integer", {{"kernel_shape", std::vector<int64_t>{3, 3}}}), {x, w}); },
                    "kernel_shape");
  expect_node_error([&] { run1(make_node("conv_integer", {{"auto_pad", std::string("SAME")}}), {x, w}); }, "auto_pad");
}

TEST(QuantKernels, QLinearOpsTakeTheirInputsInOnnxOrder) {
  Tensor a = Tensor::from_vector<uint8_t>({208, 236, 0, 238, 3, 214, 255, 29}, {2, 4});
  Tensor b = Tensor::from_vector<uint8_t>({152, 51, 244, 60, 26, 255, 0, 127, 246, 127, 254, 247}, {4, 3});
  auto s = [](float v) { return Tensor::scalar(v); };
  auto z = [](int v) { return Tensor::scalar(v, DType::u8); };
  Tensor y = run1(make_node("qlinear_matmul"), {a, s(0.0066f), z(113), b, s(0.00705f), z(114), s(0.0107f), z(118)});
  EXPECT_EQ(y.to_vector<int64_t>(), (std::vector<int64_t>{168, 115, 255, 1, 66, 151}));
  Tensor x = Tensor::from_vector<uint8_t>({10, 20, 30, 40}, {1, 1, 2, 2});
  Tensor w = Tensor::from_vector<uint8_t>({3}, {1, 1, 1, 1});
  Tensor yc = run1(make_node("qlinear_conv"), {x, s(0.5f), z(10), w, s(0.25f), z(1), s(0.1f), z(5),
                                               Tensor::from_vector<int32_t>({4})});
  EXPECT_EQ(yc.to_vector<int64_t>(), (std::vector<int64_t>{10, 35, 60, 85}));
  Tensor m = run1(make_node("matmul_integer"), {a, b, z(1)});
  expect_same(m, ops::matmul_integer(a, b, z(1)));
}

TEST(NnInferenceKernels, ConvTransposeAttributes) {
  Tensor x = arange_f32({1, 2, 3, 3}), w = arange_f32({2, 3, 3, 3}), b = f32({0.5f, -1, 2});
  ops::ConvTranspose2dOptions o;
  o.stride = {3, 2};
  o.pads = {1, 0, 0, 1};
  o.groups = 1;
  expect_same(run1(make_node("conv_transpose2d", {{"strides", std::vector<int64_t>{3, 2}},
                                                  {"pads", std::vector<int64_t>{1, 0, 0, 1}}}),
                   {x, w, b}),
              ops::conv_transpose2d(x, w, b, o));
  // output_shape 10x8 exceeds the full 9x7 output: ONNX's floor split makes the end pads -1,
  // extending the output (test_convtranspose_output_shape).
  o.pads = {0, 0, -1, -1};
  Tensor big = run1(make_node("conv_transpose2d", {{"strides", std::vector<int64_t>{3, 2}},
                                                   {"output_shape", std::vector<int64_t>{10, 8}}}),
                    {x, w});
  EXPECT_EQ(big.shape(), (Shape{1, 3, 10, 8}));
  expect_same(big, ops::conv_transpose2d(x, w, Tensor(), o));
  // SAME_UPPER: out = in * stride = 9x6; total padding (0, 1), the odd one at the end.
  o.pads = {0, 0, 0, 1};
  expect_same(run1(make_node("conv_transpose2d", {{"strides", std::vector<int64_t>{3, 2}},
                                                  {"auto_pad", std::string("SAME_UPPER")}}),
                   {x, w}),
              ops::conv_transpose2d(x, w, Tensor(), o));
  o.pads = {0, 1, 0, 0};
  expect_same(run1(make_node("conv_transpose2d", {{"strides", std::vector<int64_t>{3, 2}},
                                                  {"auto_pad", std::string("SAME_LOWER")}}),
                   {x, w}),
              ops::conv_transpose2d(x, w, Tensor(), o));
}

TEST(NnInferenceKernels, ConvTranspose1dAnd3d) {
  Tensor x = arange_f32({2, 2, 5}), w = arange_f32({2, 3, 3});
  Tensor y = run1(make_node("conv_transpose2d", {{"strides", std::vector<int64_t>{2}}, {"pads", std::vector<int64_t>{1, 0}},
                                                 {"output_padding", std::vector<int64_t>{1}}}),
                  {x, w});
  ops::ConvTranspose2dOptions o;
  o.stride = {1, 2};
  o.pads = {0, 1, 0, 0};
  o.output_padding = {0, 1};
  Tensor want = ops::conv_transpose2d(x.as_strided({2, 2, 1, 5}, {10, 5, 5, 1}, 0), w.as_strided({2, 3, 1, 3}, {9, 3, 3, 1}, 0),
                                      Tensor(), o);
  expect_same(y, want.as_strided({2, 3, 11}, {33, 11, 1}, 0));
  expect_node_error([&] { run1(make_node("conv_transpose2d"), {arange_f32({1, 1, 2, 2, 2}), arange_f32({1, 1, 2, 2, 2})}); },
                    "3-d");
}

TEST(NnInferenceKernels, InstanceNormEpsilon) {
  Tensor x = arange_f32({2, 3, 4}), s = f32({1, 2, 3}), b = f32({0, 1, 2});
  expect_same(run1(make_node("instance_norm", {{"epsilon", 0.5}}), {x, s, b}), ops::instance_norm(x, s, b, 0.5));
  expect_same(run1(make_node("instance_norm"), {x, s, b}), ops::instance_norm(x, s, b, 1e-5));
  expect_node_error([&] { run1(make_node("instance_norm"), {x, s}); }, "B");
}

TEST(NnInferenceKernels, ResizeForms) {
  Tensor x = arange_f32({1, 1, 2, 3});
  Tensor scales = f32({1, 1, 2, 1.5f});
  ops::ResizeOptions lin{ops::ResizeMode::linear, ops::ResizeCoord::align_corners};
  Node n = make_node("resize", {{"mode", std::string("linear")}, {"coordinate_transformation_mode", std::string("align_corners")}});
  Tensor want = ops::resize(x, {1, 1, 2, 1.5f}, {}, lin);
  expect_same(run1(n, {x, Tensor(), scales}), want);
  expect_same(run1(n, {x, scales}), want);  // opset 10: (X, scales)
  // sizes with an empty scales tensor (what exporters write for "absent").
  expect_same(run1(n, {x, Tensor(), Tensor::empty({0}), i64({1, 1, 3, 5})}), ops::resize(x, {}, {1, 1, 3, 5}, lin));
  // Default mode nearest, half_pixel, round_prefer_floor.
  expect_same(run1(make_node("resize"), {x, Tensor(), scales}), ops::resize(x, {1, 1, 2, 1.5f}, {}));
  // Opset 18 axes: sizes for the last two dims only.
  expect_same(run1(make_node("resize", {{"axes", std::vector<int64_t>{-1, 2}}}), {x, Tensor(), Tensor(), i64({4, 3})}),
              ops::resize(x, {}, {1, 1, 3, 4}));
  expect_node_error([&] { run1(n, {x, Tensor(), scales, i64({1, 1, 3, 5})}); }, "exactly one");
  expect_node_error([&] { run1(n, {x, Tensor(), Tensor()}); }, "exactly one");
  ops::ResizeOptions cubic{ops::ResizeMode::cubic, ops::ResizeCoord::half_pixel,
                           ops::ResizeNearest::round_prefer_floor, -0.5, true};
  expect_same(run1(make_node("resize", {{"mode", std::string("cubic")}, {"cubic_coeff_a", -0.5},
                                        {"exclude_outside", int64_t{1}}}),
                   {x, Tensor(), scales}),
              ops::resize(x, {1, 1, 2, 1.5f}, {}, cubic));
  expect_node_error([&] {
    run1(make_node("resize", {{"coordinate_transformation_mode", std::string("tf_crop_and_resize")}}),
         {x, Tensor(), scales});
  }, "needs roi");
  EXPECT_THROW(run1(make_node("resize", {{"antialias", int64_t{1}}}), {x, Tensor(), scales}), NotImplementedError);
}

TEST(NnInferenceKernels, PadForms) {
  Tensor x = arange_f32({2, 3});
  expect_same(run1(make_node("pad_mode"), {x, i64({0, 1, 1, 0}), Tensor::scalar(2.5)}),
              ops::pad_mode(x, {0, 1, 1, 0}, 2.5));
  expect_same(run1(make_node("pad_mode", {{"mode", std::string("reflect")}}), {x, i64({1, 2, 0, 1})}),
              ops::pad_mode(x, {1, 2, 0, 1}, 0.0, ops::PadMode::reflect));
  // Before opset 11: pads and value are attributes.
  expect_same(run1(make_node("pad_mode", {{"pads", std::vector<int64_t>{1, 0, 0, 2}}, {"value", 1.5}}), {x}),
              ops::pad_mode(x, {1, 0, 0, 2}, 1.5));
  // Opset 18 axes input: pads for axis 1 only.
  expect_same(run1(make_node("pad_mode", {{"mode", std::string("edge")}}), {x, i64({2, 1}), Tensor(), i64({-1})}),
              ops::pad_mode(x, {0, 2, 0, 1}, 0.0, ops::PadMode::edge));
  expect_node_error([&] { run1(make_node("pad_mode"), {x}); }, "pads");
  expect_node_error([&] { run1(make_node("pad_mode"), {x, f32({0, 1, 1, 0})}); }, "pads");
}

}  // namespace
}  // namespace kiln::graph
