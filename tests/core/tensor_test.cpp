#include <gtest/gtest.h>

#include <cmath>

#include "kiln/core/rng.h"
#include "kiln/core/tensor.h"

using namespace kiln;

TEST(Tensor, FactoriesAndMetadata) {
  Tensor t = Tensor::zeros({2, 3});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.dim(), 2);
  EXPECT_EQ(t.strides(), (Strides{3, 1}));
  EXPECT_TRUE(t.is_contiguous());
  Tensor f = Tensor::full({2}, 2.5, DType::f64);
  EXPECT_EQ(f.to_vector<double>(), (std::vector<double>{2.5, 2.5}));
  EXPECT_THROW(Tensor::empty({-1}), ValueError);
}

TEST(Tensor, StridedCopyConvertsDtype) {
  Tensor t = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor tt = t.as_strided({3, 2}, {1, 3}, 0);  // the transpose, as a view
  EXPECT_FALSE(tt.is_contiguous());
  Tensor c = to_dtype_raw(contiguous_raw(tt), DType::i64);
  EXPECT_EQ(c.to_vector<int64_t>(), (std::vector<int64_t>{1, 4, 2, 5, 3, 6}));
}

TEST(Half, RoundTripsAndRounds) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f})
    EXPECT_EQ(from_f16(to_f16(v)), v) << v;
  EXPECT_EQ(from_f16(to_f16(1.0f + 1.0f / 4096)), 1.0f);  // ties to even
  EXPECT_TRUE(std::isinf(from_f16(to_f16(1e6f))));
  EXPECT_EQ(from_bf16(to_bf16(3.140625f)), 3.140625f);
}

TEST(Rng, PhiloxKnownAnswer) {
  // Random123's published known-answer vector for philox4x32-10 with zero counter and key.
  auto r = philox4x32({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(r[0], 0x6627e8d5u);
  EXPECT_EQ(r[1], 0xe169c58du);
  EXPECT_EQ(r[2], 0xbc57ac4cu);
  EXPECT_EQ(r[3], 0x9b00dbd8u);
}

TEST(Rng, SameSeedSameNumbersAnyThreadCount) {
  Generator g1(7), g2(7);
  Tensor a = randn({1000}, g1), b = randn({1000}, g2);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  auto v = rand({100000}, g1).to_vector<float>();
  double mean = 0;
  for (float x : v) mean += x;
  mean /= static_cast<double>(v.size());
  EXPECT_NEAR(mean, 0.5, 0.01);
}
