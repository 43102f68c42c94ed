// Tests for ops/vision_ops.h and its graph kernels (graph/kernels_vision.cpp), and for resize's
// tf_crop_and_resize mode: hand-worked GridSample, RoiAlign, NonMaxSuppression and MaxUnpool
// examples.
#include "graph/node_kernel_util.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/shape_ops.h"
#include "kiln/ops/vision_ops.h"

namespace kiln::graph {
namespace {

using namespace testing;

Tensor f32(const std::vector<float>& v, const Shape& s) { return Tensor::from_vector<float>(v, s); }

// ---------------------------------------------------------------- grid_sample

Tensor sample(const Tensor& x, float gx, float gy, const std::string& mode, const std::string& padding, int64_t align) {
  Node n = make_node("grid_sample", {{"mode", mode}, {"padding_mode", padding}, {"align_corners", align}});
  return run1(n, {x, f32({gx, gy}, {1, 1, 1, 2})});
}

double sample1(const Tensor& x, float gx, float gy, const std::string& mode, const std::string& padding = "zeros",
               int64_t align = 0) {
  return sample(x, gx, gy, mode, padding, align).to_vector<double>().at(0);
}

TEST(VisionOps, GridSampleHandWorked) {
  const Tensor x = f32({1, 2, 3, 4}, {1, 1, 2, 2});
  // align_corners = 0: (0, 0) is the image centre, the mean of the four pixels.
  EXPECT_DOUBLE_EQ(sample1(x, 0, 0, "bilinear"), 2.5);
  // (-1, -1) is the outer top-left corner, pixel coordinate (-0.5, -0.5): a quarter of pixel (0, 0)
  // with zeros padding; the border clamps to pixel (0, 0); reflection about the edge lands on it too.
  EXPECT_DOUBLE_EQ(sample1(x, -1, -1, "bilinear"), 0.25);
  EXPECT_DOUBLE_EQ(sample1(x, -1, -1, "bilinear", "border"), 1.0);
  EXPECT_DOUBLE_EQ(sample1(x, -1, -1, "bilinear", "reflection"), 1.0);
  // align_corners = 1: (1, -1) is the centre of the top-right pixel.
  EXPECT_DOUBLE_EQ(sample1(x, 1, -1, "bilinear", "zeros", 1), 2.0);
  // nearest: pixel (0.7, 0.3) rounds to column 1, row 0.
  EXPECT_DOUBLE_EQ(sample1(x, 0.2f, -0.2f, "nearest"), 2.0);
  // Far outside: zeros is 0, border the nearest corner, reflection (align 1) folds x = 2 back to 0.
  EXPECT_DOUBLE_EQ(sample1(x, 3, 3, "bilinear"), 0.0);
  EXPECT_DOUBLE_EQ(sample1(x, 3, 3, "bilinear", "border"), 4.0);
  EXPECT_DOUBLE_EQ(sample1(x, 3, -1, "bilinear", "reflection", 1), 1.0);
  // bicubic at a pixel centre is that pixel (weights 0, 1, 0, 0).
  EXPECT_NEAR(sample1(x, -1, 1, "bicubic", "zeros", 1), 3.0, 1e-12);
  // bicubic at (-0.5, -0.5) on a 3x2 image 0..5, zeros padding: the weights at t = 0.5 are
  // (-0.09375, 0.59375, 0.59375, -0.09375); only taps 2 and 3 of each axis are inside:
  // 0.59375 * (-0.09375 * 1) - 0.09375 * (0.59375 * 2 - 0.09375 * 3) = -0.140625.
  const Tensor y = f32({0, 1, 2, 3, 4, 5}, {1, 1, 3, 2});
  EXPECT_NEAR(sample1(y, -1, -1, "bicubic"), -0.140625, 1e-7);
}

TEST(VisionOps, GridSampleShapesAndErrors) {
  Tensor x = to_dtype_raw(f32({1, 2, 3, 4, 5, 6, 7, 8}, {1, 2, 2, 2}), DType::f64);
  Tensor grid = to_dtype_raw(f32({0, 0, -1, -1, 1, 1}, {1, 1, 3, 2}), DType::f64);
  Tensor out = ops::grid_sample(x, grid);
  EXPECT_EQ(out.dtype(), DType::f64);
  expect_near(out, {1, 2, 1, 3}, {2.5, 0.25, 1.0, 6.5, 1.25, 2.0}, 1e-12);
  expect_error([&] { run1(make_node("grid_sample", {{"mode", std::string("linear")}}), {x, grid}); },
               {"grid_sample_node", "linear"});
  expect_error([&] { ops::grid_sample(x, f32({0, 0, 0, 0}, {2, 1, 1, 2})); }, {"grid_sample", "grid"});
}

// ---------------------------------------------------------------- roi_align

TEST(VisionOps, RoiAlignOnALinearImage) {
  // x[h][w] = w + 10 h: bilinear samples reproduce it exactly, so each bin is the mean sample
  // coordinate (after the clamp of negative coordinates to 0).
  std::vector<float> v;
  for (int h = 0; h < 4; ++h)
    for (int w = 0; w < 4; ++w) v.push_back(static_cast<float>(w + 10 * h));
  Tensor x = f32(v, {1, 1, 4, 4}), rois = f32({0, 0, 3, 3}, {1, 4}), batch = i64s({0});
  // half_pixel: the roi starts at -0.5; bins of 1.5 with 2x2 samples at -0.125 (-> 0), 0.625 and
  // 1.375, 2.125: per-axis means 0.3125 and 1.75.
  Node n = make_node("roi_align", {{"output_height", int64_t{2}}, {"output_width", int64_t{2}},
                                   {"sampling_ratio", int64_t{2}}});
  expect_near(run1(n, {x, rois, batch}), {1, 1, 2, 2}, {3.4375, 4.875, 17.8125, 19.25}, 1e-6);
  // output_half_pixel: samples at 0.375, 1.125 and 1.875, 2.625: means 0.75 and 2.25.
  n.attrs["coordinate_transformation_mode"] = std::string("output_half_pixel");
  expect_near(run1(n, {x, rois, batch}), {1, 1, 2, 2}, {8.25, 9.75, 23.25, 24.75}, 1e-6);
  // One sample landing on pixel (1, 1) of the second image: avg and max both read it.
  Tensor two = ops::cat({x, ops::add(x, 100.0)}, 0);
  for (bool max_mode : {false, true}) {
    Tensor y = ops::roi_align(two, f32({0, 0, 2, 2}, {1, 4}), i64s({1}), 1, 1, 1, 1.0, max_mode, false);
    expect_near(y, {1, 1, 1, 1}, {111.0}, 1e-5);
  }
  expect_error([&] { ops::roi_align(x, rois, i64s({1})); }, {"roi_align", "batch index 1"});
  expect_error([&] { run1(make_node("roi_align", {{"mode", std::string("sum")}}), {x, rois, batch}); },
               {"roi_align_node", "mode"});
}

// ---------------------------------------------------------------- non_max_suppression

Tensor nms(const Tensor& boxes, const Tensor& scores, std::vector<Tensor> extra, int64_t center = 0) {
  std::vector<Tensor> in = {boxes, scores};
  in.insert(in.end(), extra.begin(), extra.end());
  return run1(make_node("non_max_suppression", {{"center_point_box", center}}), in);
}

void expect_rows(const Tensor& got, const std::vector<int64_t>& want) {
  EXPECT_EQ(got.dtype(), DType::i64);
  ASSERT_EQ(got.shape(), (Shape{static_cast<int64_t>(want.size() / 3), 3}));
  EXPECT_EQ(got.to_vector<int64_t>(), want);
}

TEST(VisionOps, NonMaxSuppressionHandWorked) {
  // b1 overlaps b0 with IoU 0.9 / 1.1 = 0.82; b3 overlaps b2 with IoU 0.4 / 1.6 = 0.25.
  const std::vector<float> corners = {0, 0, 1, 1, 0, 0.1f, 1, 1.1f, 0, 2, 1, 3, 0, 2.6f, 1, 3.6f};
  Tensor boxes = f32(corners, {1, 4, 4});
  Tensor scores = f32({0.9f, 0.8f, 0.7f, 0.3f}, {1, 1, 4});
  Tensor max10 = i64s({10}), iou = f32({0.5f}, {1});
  expect_rows(nms(boxes, scores, {max10, iou}), {0, 0, 0, 0, 0, 2, 0, 0, 3});
  expect_rows(nms(boxes, scores, {max10, iou, f32({0.4f}, {1})}), {0, 0, 0, 0, 0, 2});
  expect_rows(nms(boxes, scores, {i64s({1}), iou}), {0, 0, 0});
  expect_rows(nms(boxes, scores, {max10, f32({0.9f}, {1})}), {0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3});
  expect_rows(nms(boxes, scores, {}), {});  // max_output_boxes_per_class defaults to 0
  // The same boxes with flipped corners, and as (x_center, y_center, w, h).
  std::vector<float> flipped, center;
  for (size_t b = 0; b < 4; ++b) {
    const float* c = &corners[4 * b];
    flipped.insert(flipped.end(), {c[2], c[3], c[0], c[1]});
    center.insert(center.end(), {(c[1] + c[3]) / 2, (c[0] + c[2]) / 2, c[3] - c[1], c[2] - c[0]});
  }
  expect_rows(nms(f32(flipped, {1, 4, 4}), scores, {max10, iou}), {0, 0, 0, 0, 0, 2, 0, 0, 3});
  expect_rows(nms(f32(center, {1, 4, 4}), scores, {max10, iou}, 1), {0, 0, 0, 0, 0, 2, 0, 0, 3});
  // Two classes (the second ranks the boxes the other way round) and ties (lower index first).
  Tensor two = f32({0.9f, 0.8f, 0.7f, 0.3f, 0.3f, 0.7f, 0.8f, 0.9f}, {1, 2, 4});
  // class 1 keeps b3, b2, b1 (in score order) and drops b0 (IoU 0.82 with b1)
  expect_rows(nms(boxes, two, {max10, iou}), {0, 0, 0, 0, 0, 2, 0, 0, 3, 0, 1, 3, 0, 1, 2, 0, 1, 1});
  expect_rows(nms(boxes, f32({0.5f, 0.5f, 0.5f, 0.5f}, {1, 1, 4}), {max10, iou}), {0, 0, 0, 0, 0, 2, 0, 0, 3});
  expect_error([&] { ops::non_max_suppression(boxes, f32({1, 2}, {1, 1, 2}), 1); }, {"non_max_suppression", "scores"});
}

// ---------------------------------------------------------------- max_unpool

TEST(VisionOps, MaxUnpool) {
  Tensor x = f32({1, 2, 3, 4}, {1, 1, 2, 2}), idx = Tensor::from_vector<int64_t>({5, 7, 13, 15}, {1, 1, 2, 2});
  Node n = make_node("max_unpool", {{"kernel_shape", std::vector<int64_t>{2, 2}}, {"strides", std::vector<int64_t>{2, 2}}});
  expect_near(run1(n, {x, idx}), {1, 1, 4, 4}, {0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4}, 0);
  // A larger output_shape keeps each element's coordinates (the 4x4 result padded at the end).
  std::vector<double> want(25, 0.0);
  want[6] = 1, want[8] = 2, want[16] = 3, want[18] = 4;
  expect_near(run1(n, {x, idx, i64s({1, 1, 5, 5})}), {1, 1, 5, 5}, want, 0);
  expect_error([&] { run1(n, {x, Tensor::from_vector<int64_t>({5, 7, 13, 16}, {1, 1, 2, 2})}); },
               {"max_unpool", "index 16"});
  expect_error([&] { run1(make_node("max_unpool"), {x, idx}); }, {"max_unpool_node", "kernel_shape"});
}

// ---------------------------------------------------------------- resize, tf_crop_and_resize

TEST(VisionOps, ResizeTfCropAndResize) {
  std::vector<float> v(16);
  for (int i = 0; i < 16; ++i) v[i] = static_cast<float>(i + 1);
  Tensor x = f32(v, {1, 1, 4, 4});
  Tensor roi = f32({0, 0, 0.4f, 0.6f, 1, 1, 1.2f, 1.7f}, {8});
  // Rows sample input rows 1.2, 2.4, 3.6 (past the last: extrapolated), columns 1.8, 3.45, 5.1.
  Attrs a = {{"coordinate_transformation_mode", std::string("tf_crop_and_resize")},
             {"extrapolation_value", 10.0},
             {"mode", std::string("linear")}};
  expect_near(run1(make_node("resize", a), {x, roi, Tensor(), i64s({1, 1, 3, 3})}), {1, 1, 3, 3},
              {7.6, 10, 10, 12.4, 10, 10, 10, 10, 10}, 1e-5);
  a["mode"] = std::string("nearest");  // rows 1, 2; column 2
  expect_near(run1(make_node("resize", a), {x, roi, Tensor(), i64s({1, 1, 3, 3})}), {1, 1, 3, 3},
              {7, 10, 10, 11, 10, 10, 10, 10, 10}, 0);
  // The whole image at its own size is the identity; with scales the output covers the roi.
  a["mode"] = std::string("linear");
  Tensor full = f32({0, 0, 0, 0, 1, 1, 1, 1}, {8});
  expect_near(run1(make_node("resize", a), {x, full, Tensor(), i64s({1, 1, 4, 4})}), {1, 1, 4, 4},
              x.to_vector<double>(), 1e-6);
  Tensor half = f32({0, 0, 0, 0, 1, 1, 0.5f, 1}, {8});
  Tensor y = run1(make_node("resize", a), {x, half, f32({1, 1, 1, 1}, {4})});
  expect_near(y, {1, 1, 2, 4}, {1, 2, 3, 4, 7, 8, 9, 10}, 1e-5);  // rows 0 and 1.5 of the roi [0, 1.5]
  // Nearest mode moves 16-bit values: the extrapolation value is converted, not reinterpreted
  // (GCC's parenthesised aggregate init once made static_cast<Half>(10.0) the bits 0x000a).
  a["mode"] = std::string("nearest");
  Tensor yh = run1(make_node("resize", a), {to_dtype_raw(x, DType::f16), roi, Tensor(), i64s({1, 1, 3, 3})});
  ASSERT_EQ(yh.dtype(), DType::f16);
  expect_near(to_dtype_raw(yh, DType::f32), {1, 1, 3, 3}, {7, 10, 10, 11, 10, 10, 10, 10, 10}, 0);
}

}  // namespace
}  // namespace kiln::graph
