// The view ops share storage with their input (no copy) and describe it with new strides; reshape
// copies only when no strides can express the result. Also: writes through a view are seen by the
// base, in-place writes after a save are caught at backward, and view gradients land in place.
#include <gtest/gtest.h>

#include "kiln/autograd/engine.h"
#include "kiln/core/rng.h"
#include "kiln/ops/ops.h"

using namespace kiln;

namespace {

Tensor iota(const Shape& s, DType dt = DType::f32) {
  return ops::reshape(Tensor::arange(numel(s), dt), s);
}

bool shares(const Tensor& a, const Tensor& b) { return a.storage() == b.storage(); }

}  // namespace

TEST(Views, TransposePermuteSliceExpandShareStorage) {
  Tensor x = iota({2, 3, 4});
  Tensor t = ops::transpose(x, 0, 2);
  EXPECT_TRUE(shares(t, x));
  EXPECT_EQ(t.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(t.strides(), (Strides{1, 4, 12}));
  EXPECT_FALSE(t.is_contiguous());

  Tensor p = ops::permute(x, {1, 2, 0});
  EXPECT_TRUE(shares(p, x));
  EXPECT_EQ(p.strides(), (Strides{4, 1, 12}));

  Tensor s = ops::slice(x, 2, 1, 4, 2);  // columns 1 and 3
  EXPECT_TRUE(shares(s, x));
  EXPECT_EQ(s.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(s.strides(), (Strides{12, 4, 2}));
  EXPECT_EQ(s.offset(), 1);
  EXPECT_EQ(s.to_vector<float>()[0], 1.0f);
  EXPECT_EQ(s.to_vector<float>()[1], 3.0f);

  Tensor e = ops::expand(ops::slice(x, 0, 0, 1), {5, 3, 4});
  EXPECT_TRUE(shares(e, x));
  EXPECT_EQ(e.strides()[0], 0);
  EXPECT_EQ(e.to_vector<float>()[4 * 12 + 5], 5.0f);
}

TEST(Views, ReshapeIsAViewWhenStridesAllowAndACopyOtherwise) {
  Tensor x = iota({4, 6});
  Tensor r = ops::reshape(x, {2, 2, 3, 2});
  EXPECT_TRUE(shares(r, x));
  EXPECT_TRUE(r.is_contiguous());

  // Rows 1..3 of a contiguous matrix are still one contiguous block: viewable.
  Tensor rows = ops::slice(x, 0, 1, 3);
  Tensor rv = ops::reshape(rows, {12});
  EXPECT_TRUE(shares(rv, x));
  EXPECT_EQ(rv.to_vector<float>()[0], 6.0f);

  // Merging dims of a column slice is not expressible with strides: a copy with the right values.
  Tensor cols = ops::slice(x, 1, 0, 3);
  Tensor split_only = ops::reshape(cols, {4, 3, 1});
  EXPECT_TRUE(shares(split_only, x));
  Tensor merged = ops::reshape(cols, {12});
  EXPECT_FALSE(shares(merged, x));
  EXPECT_EQ(merged.to_vector<float>(), (std::vector<float>{0, 1, 2, 6, 7, 8, 12, 13, 14, 18, 19, 20}));

  // The transpose of a matrix cannot be flattened without a copy.
  Tensor t = ops::transpose(x, 0, 1);
  Tensor flat = ops::flatten(t);
  EXPECT_FALSE(shares(flat, x));
  EXPECT_EQ(flat.to_vector<float>()[1], 6.0f);
  // ...but splitting one of its dims is a view.
  Tensor t3 = ops::reshape(t, {2, 3, 4});
  EXPECT_TRUE(shares(t3, x));
  EXPECT_EQ(t3.to_vector<float>(), ops::contiguous(t).to_vector<float>());
}

TEST(Views, SqueezeUnsqueezeFlattenEdgeCases) {
  Tensor x = iota({3, 1, 4});
  EXPECT_EQ(ops::squeeze(x, 1).shape(), (Shape{3, 4}));
  EXPECT_EQ(ops::squeeze(x, 0).shape(), (Shape{3, 1, 4}));  // not size 1: unchanged
  EXPECT_EQ(ops::unsqueeze(x, -1).shape(), (Shape{3, 1, 4, 1}));
  EXPECT_EQ(ops::unsqueeze(x, 0).shape(), (Shape{1, 3, 1, 4}));
  EXPECT_TRUE(shares(ops::unsqueeze(x, 2), x));
  EXPECT_EQ(ops::flatten(Tensor::scalar(3.0)).shape(), (Shape{1}));
  EXPECT_EQ(ops::flatten(x, 0, 1).shape(), (Shape{3, 4}));
  EXPECT_EQ(ops::slice(x, 0, 2, 1).shape(), (Shape{0, 1, 4}));  // empty when start >= end
  EXPECT_EQ(ops::reshape(Tensor::zeros({0, 3}), {3, -1, 5}).shape(), (Shape{3, 0, 5}));
}

TEST(Views, ContiguousCopiesOnlyWhenNeeded) {
  Tensor x = iota({3, 4});
  EXPECT_TRUE(ops::contiguous(x).same(x));
  Tensor t = ops::transpose(x, 0, 1);
  Tensor c = ops::contiguous(t);
  EXPECT_FALSE(shares(c, x));
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_EQ(c.to_vector<float>(), t.to_vector<float>());
}

TEST(Views, WritesThroughAViewReachTheBase) {
  Tensor x = Tensor::zeros({3, 4});
  Tensor col = ops::slice(ops::transpose(x, 0, 1), 0, 2, 3);  // x[:, 2] as a (1, 3) view
  ops::fill_(col, 7.0);
  std::vector<float> v = x.to_vector<float>();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) EXPECT_EQ(v[i * 4 + j], j == 2 ? 7.0f : 0.0f);
  auto parts = ops::split(x, 2, 1);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_TRUE(shares(parts[1], x));
  ops::fill_(parts[0], 1.0);
  EXPECT_EQ(x.to_vector<float>()[1], 1.0f);
}

TEST(Views, InPlaceWriteAfterSaveIsCaughtAtBackward) {
  Tensor w = Tensor::ones({3, 4});
  w.set_requires_grad(true);
  Tensor t = iota({4, 3});
  Tensor y = ops::mul(w, ops::transpose(t, 0, 1));  // saves the transposed view of t
  ops::fill_(t, 2.0);                                 // same storage: bumps its version
  try {
    autograd::backward(ops::sum(y));
    FAIL() << "backward used a tensor modified in place";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("in-place"), std::string::npos) << e.what();
  }
}

TEST(Views, InPlaceOnATrackedViewIsRefused) {
  Tensor w = Tensor::ones({3, 4});
  w.set_requires_grad(true);
  Tensor v = ops::transpose(w, 0, 1);
  EXPECT_THROW(ops::fill_(v, 0.0), Error);
  EXPECT_THROW(ops::mul_(v, 2.0), Error);
}

TEST(Views, GradientsOfViewsLandInPlace) {
  Tensor x = Tensor::zeros({3, 4}, DType::f64);
  x.set_requires_grad(true);
  // y = sum over x[1:3, ::2] transposed and expanded twice
  Tensor v = ops::expand(ops::unsqueeze(ops::transpose(ops::slice(ops::slice(x, 0, 1, 3), 1, 0, 4, 2), 0, 1), 0),
                         {2, 2, 2});
  autograd::backward(ops::sum(v));
  std::vector<double> g = x.grad().to_vector<double>();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) EXPECT_EQ(g[i * 4 + j], (i >= 1 && j % 2 == 0) ? 2.0 : 0.0) << i << "," << j;
}

TEST(Views, ReshapeOfACopyKeepsTheGradientPath) {
  Tensor x = iota({3, 4}, DType::f64).detach();
  x.set_requires_grad(true);
  Tensor y = ops::reshape(ops::transpose(x, 0, 1), {12});  // a copy (not viewable)
  Tensor w = Tensor::from_vector<double>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  autograd::backward(ops::sum(ops::mul(y, w)));
  // y[k] = x^T flattened: y[j * 3 + i] = x[i][j], so dx[i][j] = w[j * 3 + i]
  std::vector<double> g = x.grad().to_vector<double>();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) EXPECT_EQ(g[i * 4 + j], j * 3 + i);
}
