// Each layer's forward against a naive loop on tiny inputs; batch-norm running statistics and
// train/eval behaviour against hand computation.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/core/error.h"
#include "kiln/nn/nn.h"

using namespace kiln;
using namespace kiln::nn;

namespace {

void expect_all_near(const std::vector<double>& got, const std::vector<double>& want, double tol = 1e-5) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

// Sets a parameter to given values through the state dict path.
void set_values(Module& m, const std::string& key, const Tensor& values) {
  StateDict s;
  s[key] = values;
  m.load_state_dict(s, false);
}

}  // namespace

TEST(Layers, LinearMatchesNaiveLoop) {
  Generator gen(1);
  Linear fc(5, 3, gen);
  Tensor x = randn({4, 5}, gen);
  auto xv = x.to_vector<double>(), w = fc.weight().to_vector<double>(), b = fc.bias().to_vector<double>();
  for (double v : w) EXPECT_LE(std::abs(v), 1.0 / std::sqrt(5.0));
  std::vector<double> want;
  for (int i = 0; i < 4; ++i)
    for (int o = 0; o < 3; ++o) {
      double s = b[o];
      for (int k = 0; k < 5; ++k) s += xv[i * 5 + k] * w[o * 5 + k];
      want.push_back(s);
    }
  expect_all_near(fc(x).to_vector<double>(), want);
  Linear nobias(5, 3, gen, false);
  EXPECT_EQ(nobias.named_parameters().size(), 1u);
  EXPECT_THROW(fc(randn({4, 6}, gen)), ValueError);
}

TEST(Layers, Conv2dMatchesNaiveLoop) {
  Generator gen(2);
  for (int64_t groups : {1, 2}) {
    const int64_t N = 2, C = 4, H = 5, W = 6, O = 6, K = 3, S = 2, P = 1;
    Conv2d conv(C, O, K, gen, Conv2dArgs{.stride = S, .padding = P, .groups = groups});
    int64_t cg = C / groups, og = O / groups;
    EXPECT_EQ(conv.weight().shape(), (Shape{O, cg, K, K}));
    double bound = 1.0 / std::sqrt(static_cast<double>(cg * K * K));
    for (double v : conv.weight().to_vector<double>()) EXPECT_LE(std::abs(v), bound);
    Tensor x = randn({N, C, H, W}, gen);
    auto xv = x.to_vector<double>(), w = conv.weight().to_vector<double>(), b = conv.bias().to_vector<double>();
    int64_t OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1;
    std::vector<double> want;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            double s = b[o];
            int64_t g = o / og;
            for (int64_t c = 0; c < cg; ++c)
              for (int64_t kh = 0; kh < K; ++kh)
                for (int64_t kw = 0; kw < K; ++kw) {
                  int64_t ih = oh * S - P + kh, iw = ow * S - P + kw;
                  if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                  s += xv[((n * C + g * cg + c) * H + ih) * W + iw] * w[((o * cg + c) * K + kh) * K + kw];
                }
            want.push_back(s);
          }
    Tensor y = conv(x);
    EXPECT_EQ(y.shape(), (Shape{N, O, OH, OW}));
    expect_all_near(y.to_vector<double>(), want, 1e-4);
  }
}

TEST(Layers, BatchNorm2dTrainingStatsAndEval) {
  const int64_t N = 3, C = 2, H = 2, W = 2;
  BatchNorm2d bn(C);
  EXPECT_EQ(bn.running_var().to_vector<float>(), (std::vector<float>{1, 1}));
  set_values(bn, "weight", Tensor::from_vector<float>({2.0f, 0.5f}));
  set_values(bn, "bias", Tensor::from_vector<float>({0.1f, -1.0f}));
  Generator gen(3);
  Tensor x = randn({N, C, H, W}, gen);
  auto xv = x.to_vector<double>();
  const double gamma[2] = {2.0, 0.5}, beta[2] = {0.1, -1.0};
  std::vector<double> mean(C), var(C);
  for (int64_t c = 0; c < C; ++c) {
    double s = 0, q = 0;
    int64_t m = N * H * W;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < H * W; ++i) s += xv[(n * C + c) * H * W + i];
    mean[c] = s / m;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < H * W; ++i) q += std::pow(xv[(n * C + c) * H * W + i] - mean[c], 2);
    var[c] = q / m;  // biased, for normalising
  }
  std::vector<double> want(xv.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < H * W; ++i) {
        size_t k = static_cast<size_t>((n * C + c) * H * W + i);
        want[k] = (xv[k] - mean[c]) / std::sqrt(var[c] + 1e-5) * gamma[c] + beta[c];
      }
  expect_all_near(bn(x).to_vector<double>(), want, 1e-4);
  // running = 0.9 * running + 0.1 * batch, with the unbiased variance.
  int64_t m = N * H * W;
  expect_all_near(bn.running_mean().to_vector<double>(), {0.1 * mean[0], 0.1 * mean[1]});
  expect_all_near(bn.running_var().to_vector<double>(),
                  {0.9 + 0.1 * var[0] * m / (m - 1), 0.9 + 0.1 * var[1] * m / (m - 1)});
  EXPECT_EQ(bn.num_batches_tracked().to_vector<int64_t>()[0], 1);

  // Eval normalises with the running statistics and leaves them alone.
  bn.eval();
  auto rm = bn.running_mean().to_vector<double>(), rv = bn.running_var().to_vector<double>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < H * W; ++i) {
        size_t k = static_cast<size_t>((n * C + c) * H * W + i);
        want[k] = (xv[k] - rm[c]) / std::sqrt(rv[c] + 1e-5) * gamma[c] + beta[c];
      }
  expect_all_near(bn(x).to_vector<double>(), want, 1e-4);
  expect_all_near(bn.running_mean().to_vector<double>(), rm, 0);
  EXPECT_EQ(bn.num_batches_tracked().to_vector<int64_t>()[0], 1);
}

TEST(Layers, BatchNorm1dOnFeaturesAndSequences) {
  BatchNorm1d bn(2);
  Tensor x = Tensor::from_vector<float>({1, 10, 3, 20, 5, 60}, {3, 2});
  // Column 0: 1, 3, 5 (mean 3, var 8/3); column 1: 10, 20, 60 (mean 30, var 1400/3).
  Tensor y = bn(x);
  double s0 = std::sqrt(8.0 / 3 + 1e-5), s1 = std::sqrt(1400.0 / 3 + 1e-5);
  expect_all_near(y.to_vector<double>(), {-2 / s0, -20 / s1, 0, -10 / s1, 2 / s0, 30 / s1});
  expect_all_near(bn.running_var().to_vector<double>(), {0.9 + 0.1 * 4.0, 0.9 + 0.1 * 700.0}, 1e-4);
  Tensor seq = Tensor::from_vector<float>({1, 3, 10, 20, 5, 5, 60, 60}, {2, 2, 2});  // (N, C, L)
  BatchNorm1d bn2(2);
  EXPECT_EQ(bn2(seq).shape(), (Shape{2, 2, 2}));
  expect_all_near(bn2.running_mean().to_vector<double>(), {0.1 * 3.5, 0.1 * 37.5});
  EXPECT_THROW(bn2(Tensor::zeros({2, 3})), ValueError);
}

TEST(Layers, LayerNormMatchesNaive) {
  LayerNorm ln(4);
  set_values(ln, "weight", Tensor::from_vector<float>({1, 2, 3, 4}));
  set_values(ln, "bias", Tensor::from_vector<float>({0, 0, 1, 1}));
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, -1, 0, 0, 5}, {2, 4});
  auto xv = x.to_vector<double>();
  std::vector<double> want;
  const double g[4] = {1, 2, 3, 4}, b[4] = {0, 0, 1, 1};
  for (int r = 0; r < 2; ++r) {
    double mean = 0, var = 0;
    for (int i = 0; i < 4; ++i) mean += xv[r * 4 + i] / 4;
    for (int i = 0; i < 4; ++i) var += std::pow(xv[r * 4 + i] - mean, 2) / 4;
    for (int i = 0; i < 4; ++i) want.push_back((xv[r * 4 + i] - mean) / std::sqrt(var + 1e-5) * g[i] + b[i]);
  }
  expect_all_near(ln(x).to_vector<double>(), want, 1e-5);
}

TEST(Layers, EmbeddingLooksUpRows) {
  Generator gen(4);
  Embedding emb(5, 3, gen);
  auto w = emb.weight().to_vector<float>();
  Tensor idx = Tensor::from_vector<int64_t>({4, 0, 4}, {1, 3});
  Tensor y = emb(idx);
  EXPECT_EQ(y.shape(), (Shape{1, 3, 3}));
  auto yv = y.to_vector<float>();
  const int rows[3] = {4, 0, 4};
  for (int t = 0; t < 3; ++t)
    for (int d = 0; d < 3; ++d) EXPECT_EQ(yv[t * 3 + d], w[rows[t] * 3 + d]);
  EXPECT_THROW(emb(Tensor::from_vector<int64_t>({5})), IndexError);
}

TEST(Layers, DropoutTrainEvalAndSeeding) {
  Tensor x = Tensor::ones({10000});
  Dropout d(0.25, 11), d2(0.25, 11);
  auto y = d(x).to_vector<float>();
  int zeros = 0;
  for (float v : y) {
    if (v == 0) {
      ++zeros;
    } else {
      EXPECT_NEAR(v, 1.0 / 0.75, 1e-6);
    }
  }
  EXPECT_NEAR(zeros / 10000.0, 0.25, 0.02);
  EXPECT_EQ(d2(x).to_vector<float>(), y);  // same seed, same mask
  EXPECT_NE(d(x).to_vector<float>(), y);   // the stream moves on
  d.eval();
  EXPECT_EQ(d(x).to_vector<float>(), x.to_vector<float>());
  EXPECT_THROW(Dropout(1.0), ValueError);
}

TEST(Layers, PoolingMatchesNaive) {
  std::vector<float> v(16);
  for (int i = 0; i < 16; ++i) v[i] = static_cast<float>((i * 7) % 16);  // a permutation of 0..15
  Tensor x = Tensor::from_vector<float>(v, {1, 1, 4, 4});
  std::vector<double> want_max, want_avg;
  for (int oh = 0; oh < 2; ++oh)
    for (int ow = 0; ow < 2; ++ow) {
      double m = -1, s = 0;
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b) {
          double e = v[(oh * 2 + a) * 4 + ow * 2 + b];
          m = std::max(m, e);
          s += e;
        }
      want_max.push_back(m);
      want_avg.push_back(s / 4);
    }
  expect_all_near(MaxPool2d(2)(x).to_vector<double>(), want_max);
  expect_all_near(AvgPool2d(2)(x).to_vector<double>(), want_avg);
  // Padding counts in the divisor: the corner window (3x3, pad 1, stride 2) sees 4 real values / 9.
  Tensor padded = AvgPool2d(3, 2, 1)(x);
  EXPECT_EQ(padded.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_NEAR(padded.to_vector<double>()[0], (v[0] + v[1] + v[4] + v[5]) / 9.0, 1e-5);
  // Adaptive pooling over 5x5 to 2x2: bins [0, 3) and [2, 5) in each dim.
  std::vector<float> u(25);
  for (int i = 0; i < 25; ++i) u[i] = static_cast<float>(i);
  Tensor y = AdaptiveAvgPool2d(2)(Tensor::from_vector<float>(u, {1, 1, 5, 5}));
  auto bin = [&](int r0, int c0) {
    double s = 0;
    for (int r = r0; r < r0 + 3; ++r)
      for (int c = c0; c < c0 + 3; ++c) s += u[r * 5 + c];
    return s / 9;
  };
  expect_all_near(y.to_vector<double>(), {bin(0, 0), bin(0, 2), bin(2, 0), bin(2, 2)});
  EXPECT_NEAR(AdaptiveAvgPool2d(1)(x).to_vector<double>()[0], 7.5, 1e-6);
}

TEST(Layers, ActivationsAndFlatten) {
  Tensor x = Tensor::from_vector<float>({-2.0f, -0.5f, 0.0f, 1.5f});
  auto xv = x.to_vector<double>();
  std::vector<double> relu, gelu, gelu_tanh, silu, th, sg;
  for (double v : xv) {
    relu.push_back(std::max(v, 0.0));
    gelu.push_back(0.5 * v * (1 + std::erf(v / std::sqrt(2.0))));
    gelu_tanh.push_back(0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))));
    silu.push_back(v / (1 + std::exp(-v)));
    th.push_back(std::tanh(v));
    sg.push_back(1 / (1 + std::exp(-v)));
  }
  expect_all_near(ReLU()(x).to_vector<double>(), relu);
  expect_all_near(GELU()(x).to_vector<double>(), gelu);
  expect_all_near(GELU(ops::GeluApprox::tanh)(x).to_vector<double>(), gelu_tanh);
  expect_all_near(SiLU()(x).to_vector<double>(), silu);
  expect_all_near(Tanh()(x).to_vector<double>(), th);
  expect_all_near(Sigmoid()(x).to_vector<double>(), sg);
  EXPECT_EQ(Flatten()(Tensor::zeros({2, 3, 4, 5})).shape(), (Shape{2, 60}));
  EXPECT_EQ(Flatten(0, 1)(Tensor::zeros({2, 3, 4})).shape(), (Shape{6, 4}));
}
