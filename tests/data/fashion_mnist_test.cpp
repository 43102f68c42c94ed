// The real Fashion-MNIST files: sizes, class balance, first labels and pixel sums computed
// independently (Python's gzip module), and the normalisation constants.
#include <cmath>
#include <filesystem>

#include <gtest/gtest.h>

#include "kiln/data/fashion_mnist.h"

using namespace kiln;

namespace {
bool have_dataset() {
  return std::filesystem::exists(std::string(data::kFashionMnistDir) + "/t10k-labels-idx1-ubyte.gz");
}

// Undo the normalisation and return the raw 0..255 pixel value.
double raw_pixel(float v) { return (v * data::kFashionMnistStd + data::kFashionMnistMean) * 255.0; }
}  // namespace

TEST(FashionMnist, LoadsBothSplits) {
  if (!have_dataset()) GTEST_SKIP() << "Fashion-MNIST not installed (Debian package dataset-fashion-mnist)";
  struct Split {
    const char* name;
    int64_t n;
    std::vector<int64_t> first_labels;
    double first_image_sum;
  };
  for (const Split& s : {Split{"train", 60000, {9, 0, 0, 3, 0, 2, 7, 2, 5, 5}, 76247},
                         Split{"test", 10000, {9, 2, 1, 1, 6, 1, 4, 6, 5, 7}, 33456}}) {
    SCOPED_TRACE(s.name);
    auto ds = data::load_fashion_mnist(data::kFashionMnistDir, s.name);
    ASSERT_EQ(ds->size(), s.n);
    EXPECT_EQ(ds->inputs().shape(), (Shape{s.n, 1, 28, 28}));
    EXPECT_EQ(ds->inputs().dtype(), DType::f32);
    EXPECT_EQ(ds->targets().shape(), (Shape{s.n}));
    EXPECT_EQ(ds->targets().dtype(), DType::i64);

    auto labels = ds->targets().to_vector<int64_t>();
    std::vector<int64_t> counts(10, 0);
    for (int64_t l : labels) counts[static_cast<size_t>(l)]++;
    EXPECT_EQ(counts, std::vector<int64_t>(10, s.n / 10));
    EXPECT_EQ(std::vector<int64_t>(labels.begin(), labels.begin() + 10), s.first_labels);

    const float* px = ds->inputs().data<float>();
    double sum = 0;
    for (int i = 0; i < 784; ++i) {
      double r = raw_pixel(px[i]);
      EXPECT_NEAR(r, std::round(r), 1e-3);
      sum += std::round(r);
    }
    EXPECT_EQ(sum, s.first_image_sum);
    data::Example e = ds->get(0);
    EXPECT_EQ(e.input.shape(), (Shape{1, 28, 28}));
    EXPECT_EQ(e.target.item(), 9);
  }
}

TEST(FashionMnist, NormalisationConstantsMatchTrainingPixels) {
  if (!have_dataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  auto ds = data::load_fashion_mnist();
  const float* px = ds->inputs().data<float>();
  const int64_t n = ds->inputs().numel();
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    double u = raw_pixel(px[i]) / 255.0;  // back in [0, 1]
    s += u;
    s2 += u * u;
  }
  const double mean = s / n, stdev = std::sqrt(s2 / n - mean * mean);
  EXPECT_NEAR(mean, 0.2860, 5e-4);
  EXPECT_NEAR(stdev, 0.3530, 5e-4);
  // So the normalised pixels have mean ~0 and std ~1.
  EXPECT_NEAR((mean - data::kFashionMnistMean) / data::kFashionMnistStd, 0.0, 2e-3);
}

TEST(FashionMnist, RejectsBadArguments) {
  EXPECT_THROW(data::load_fashion_mnist(data::kFashionMnistDir, "validation"), ValueError);
  EXPECT_THROW(data::load_fashion_mnist("/nonexistent/dir", "train"), IoError);
}
