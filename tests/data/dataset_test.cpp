// Dataset::get_batch default stacking and TensorDataset row gathering.
#include <gtest/gtest.h>

#include "kiln/data/tensor_dataset.h"

using namespace kiln;
using namespace kiln::data;

namespace {
// Example i: input is the 2x3 matrix [[i, i+1, i+2], [i+3, i+4, i+5]] stored transposed
// (a non-contiguous view), target is the scalar 10*i.
class MatrixDataset : public Dataset {
 public:
  int64_t size() const override { return 5; }
  Example get(int64_t i) const override {
    std::vector<float> v(6);
    for (int k = 0; k < 6; ++k) v[k] = static_cast<float>(i + k);
    Tensor base = Tensor::from_vector(v, {3, 2});  // base[c][r] will hold element (r, c)
    float* p = base.data<float>();
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 3; ++c) p[c * 2 + r] = static_cast<float>(i + r * 3 + c);
    return {base.as_strided({2, 3}, {1, 2}, 0), Tensor::scalar(static_cast<double>(10 * i), DType::i64)};
  }
};

class RaggedDataset : public Dataset {
 public:
  int64_t size() const override { return 2; }
  Example get(int64_t i) const override { return {Tensor::zeros({i + 1}), Tensor::scalar(0, DType::i64)}; }
};
}  // namespace

TEST(Dataset, DefaultGetBatchStacks) {
  MatrixDataset ds;
  Batch b = ds.get_batch({3, 0, 4});
  EXPECT_EQ(b.input.shape(), (Shape{3, 2, 3}));
  EXPECT_EQ(b.target.shape(), (Shape{3}));
  EXPECT_EQ(b.target.to_vector<int64_t>(), (std::vector<int64_t>{30, 0, 40}));
  auto v = b.input.to_vector<float>();
  const int64_t idx[3] = {3, 0, 4};
  for (int k = 0; k < 3; ++k)
    for (int e = 0; e < 6; ++e) EXPECT_EQ(v[k * 6 + e], static_cast<float>(idx[k] + e));
  EXPECT_EQ(b.indices, (std::vector<int64_t>{3, 0, 4}));
  EXPECT_THROW(ds.get_batch({5}), IndexError);
  RaggedDataset ragged;
  EXPECT_THROW(ragged.get_batch({0, 1}), ValueError);
}

TEST(Dataset, TensorDatasetGathersRows) {
  Tensor x = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5, 6, 7}, {4, 2});
  Tensor y = Tensor::from_vector<int64_t>({7, 8, 9, 10});
  TensorDataset ds(x, y);
  EXPECT_EQ(ds.size(), 4);
  Batch b = ds.get_batch({2, 2, 0});
  EXPECT_EQ(b.input.to_vector<float>(), (std::vector<float>{4, 5, 4, 5, 0, 1}));
  EXPECT_EQ(b.target.to_vector<int64_t>(), (std::vector<int64_t>{9, 9, 7}));
  Example e = ds.get(3);
  EXPECT_EQ(e.input.shape(), (Shape{2}));
  EXPECT_EQ(e.input.to_vector<float>(), (std::vector<float>{6, 7}));
  EXPECT_EQ(e.target.item(), 10);
  EXPECT_THROW(ds.get(4), IndexError);
  EXPECT_THROW(ds.get_batch({-1}), IndexError);
  EXPECT_THROW(TensorDataset(x, Tensor::zeros({3}, DType::i64)), ValueError);
  // A non-contiguous input (transposed view) is made contiguous once.
  Tensor xt = Tensor::from_vector<float>({0, 2, 4, 6, 1, 3, 5, 7}, {2, 4}).as_strided({4, 2}, {1, 4}, 0);
  TensorDataset dt(xt, y);
  EXPECT_EQ(dt.get_batch({1, 3}).input.to_vector<float>(), (std::vector<float>{2, 3, 6, 7}));
}
