// Augmentation: determinism from the batch seed, and that crops and flips are exactly the
// shifted / mirrored image (checked against a naive search over all offsets).
#include <set>

#include <gtest/gtest.h>

#include "kiln/core/rng.h"
#include "kiln/data/augment.h"

using namespace kiln;
using namespace kiln::data;

namespace {

Batch random_images(int64_t B, int64_t C, int64_t H, int64_t W, uint64_t seed) {
  Generator g(seed);
  Batch b;
  b.input = uniform({B, C, H, W}, 1.0, 2.0, g);  // never 0, so padding is recognisable
  b.target = Tensor::zeros({B}, DType::i64);
  return b;
}

// Naive reference: image shifted by (dy, dx) with zero fill, optionally mirrored afterwards.
std::vector<float> reference(const float* img, int64_t C, int64_t H, int64_t W, int dy, int dx, bool flip) {
  std::vector<float> out(static_cast<size_t>(C * H * W));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        int64_t cx = flip ? W - 1 - x : x;  // column of the cropped image that lands at x
        int64_t sy = y + dy, sx = cx + dx;
        out[(c * H + y) * W + x] = (sy >= 0 && sy < H && sx >= 0 && sx < W) ? img[(c * H + sy) * W + sx] : 0.0f;
      }
  return out;
}

}  // namespace

TEST(Augment, DeterministicGivenBatchSeed) {
  Batch a = random_images(16, 1, 28, 28, 1), b = random_images(16, 1, 28, 28, 1), c = random_images(16, 1, 28, 28, 1);
  augment_images(a, 42);
  augment_images(b, 42);
  augment_images(c, 43);
  EXPECT_EQ(a.input.to_vector<float>(), b.input.to_vector<float>());
  EXPECT_NE(a.input.to_vector<float>(), c.input.to_vector<float>());
  // Through the loader-style functor too.
  Batch d = random_images(16, 1, 28, 28, 1);
  make_image_augment()(d, 42);
  EXPECT_EQ(a.input.to_vector<float>(), d.input.to_vector<float>());
}

TEST(Augment, FlipMirrorsExactly) {
  const int64_t B = 64, C = 2, H = 5, W = 7;
  Batch b = random_images(B, C, H, W, 3);
  const auto orig = b.input.to_vector<float>();
  AugmentOptions o;
  o.pad = 0;
  augment_images(b, 7, o);
  const auto out = b.input.to_vector<float>();
  int flipped = 0, kept = 0;
  for (int64_t i = 0; i < B; ++i) {
    const float* src = orig.data() + i * C * H * W;
    std::vector<float> got(out.begin() + i * C * H * W, out.begin() + (i + 1) * C * H * W);
    std::vector<float> mirrored(static_cast<size_t>(C * H * W));
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) mirrored[(c * H + y) * W + x] = src[(c * H + y) * W + (W - 1 - x)];
    if (got == mirrored) {
      ++flipped;
    } else {
      EXPECT_EQ(got, std::vector<float>(src, src + C * H * W)) << "image " << i << " is neither kept nor mirrored";
      ++kept;
    }
  }
  EXPECT_GT(flipped, 16);  // Binomial(64, 1/2)
  EXPECT_GT(kept, 16);
}

TEST(Augment, CropIsAShiftWithZeroPadding) {
  const int64_t B = 200, C = 1, H = 28, W = 28;
  Batch b = random_images(B, C, H, W, 5);
  const auto orig = b.input.to_vector<float>();
  augment_images(b, 11);  // pad 4 + flip
  const auto out = b.input.to_vector<float>();
  std::set<std::tuple<int, int, bool>> seen;
  for (int64_t i = 0; i < B; ++i) {
    const float* src = orig.data() + i * C * H * W;
    std::vector<float> got(out.begin() + i * C * H * W, out.begin() + (i + 1) * C * H * W);
    bool found = false;
    for (int dy = -4; dy <= 4 && !found; ++dy)
      for (int dx = -4; dx <= 4 && !found; ++dx)
        for (bool flip : {false, true})
          if (got == reference(src, C, H, W, dy, dx, flip)) {
            seen.insert({dy, dx, flip});
            found = true;
            break;
          }
    EXPECT_TRUE(found) << "image " << i << " is not a padded crop of its input";
  }
  // 200 images over 162 equally likely choices: many distinct ones, including the extremes' rows.
  EXPECT_GT(seen.size(), 60u);
  bool corner = false;
  for (auto [dy, dx, f] : seen) corner |= std::abs(dy) == 4 || std::abs(dx) == 4;
  EXPECT_TRUE(corner);
}

TEST(Augment, RejectsBadInput) {
  Batch b;
  b.input = Tensor::zeros({2, 28, 28});
  EXPECT_THROW(augment_images(b, 1), ValueError);
  b.input = Tensor::zeros({2, 1, 28, 28}, DType::f64);
  EXPECT_THROW(augment_images(b, 1), TypeError);
}
