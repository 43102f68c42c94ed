// CausalSelfAttention and Block against a naive double-precision reference built from their
// own weights; causality checked by perturbing future positions.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/nn/nn.h"

using namespace kiln;
using namespace kiln::nn;

namespace {

using Mat = std::vector<std::vector<double>>;  // (T, C) for one batch element

Mat linear_ref(const Mat& x, const Linear& fc) {
  auto w = fc.weight().to_vector<double>(), b = fc.bias().to_vector<double>();
  int64_t in = fc.in_features(), out = fc.out_features();
  Mat y(x.size(), std::vector<double>(out));
  for (size_t t = 0; t < x.size(); ++t)
    for (int64_t o = 0; o < out; ++o) {
      double s = b[o];
      for (int64_t k = 0; k < in; ++k) s += x[t][k] * w[o * in + k];
      y[t][o] = s;
    }
  return y;
}

Mat attention_ref(const Mat& x, CausalSelfAttention& attn, int64_t H) {
  int64_t T = static_cast<int64_t>(x.size()), C = static_cast<int64_t>(x[0].size()), D = C / H;
  Mat qkv = linear_ref(x, attn.qkv());
  Mat y(T, std::vector<double>(C, 0.0));
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < T; ++i) {
      std::vector<double> s(i + 1);
      double mx = -1e300, z = 0;
      for (int64_t j = 0; j <= i; ++j) {  // causal: keys up to i
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += qkv[i][h * D + d] * qkv[j][C + h * D + d];
        s[j] = dot / std::sqrt(static_cast<double>(D));
        mx = std::max(mx, s[j]);
      }
      for (auto& e : s) z += (e = std::exp(e - mx));
      for (int64_t j = 0; j <= i; ++j)
        for (int64_t d = 0; d < D; ++d) y[i][h * D + d] += s[j] / z * qkv[j][2 * C + h * D + d];
    }
  return linear_ref(y, attn.proj());
}

Mat row(const Tensor& x, int64_t b) {  // (B, T, C) -> batch element b
  int64_t T = x.size(1), C = x.size(2);
  auto v = x.to_vector<double>();
  Mat m(T, std::vector<double>(C));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) m[t][c] = v[(b * T + t) * C + c];
  return m;
}

void expect_mat_near(const Mat& got, const Mat& want, double tol) {
  for (size_t t = 0; t < want.size(); ++t)
    for (size_t c = 0; c < want[t].size(); ++c) EXPECT_NEAR(got[t][c], want[t][c], tol) << t << "," << c;
}

}  // namespace

TEST(Transformer, AttentionMatchesNaiveReference) {
  Generator gen(1);
  const int64_t B = 2, T = 5, C = 8, H = 2;
  CausalSelfAttention attn(C, H, gen);
  Tensor x = randn({B, T, C}, gen);
  Tensor y = attn(x);
  ASSERT_EQ(y.shape(), (Shape{B, T, C}));
  for (int64_t b = 0; b < B; ++b) expect_mat_near(row(y, b), attention_ref(row(x, b), attn, H), 1e-4);
}

TEST(Transformer, BlockMatchesNaiveReferenceAndIsCausal) {
  Generator gen(2);
  const int64_t B = 1, T = 6, C = 8, H = 4, M = 16;
  Block block(C, H, M, gen);
  Tensor x = randn({B, T, C}, gen);
  Tensor y = block(x);
  auto layer_norm = [](const Mat& m) {
    Mat out = m;
    for (auto& r : out) {
      double mean = 0, var = 0;
      for (double v : r) mean += v / r.size();
      for (double v : r) var += (v - mean) * (v - mean) / r.size();
      for (double& v : r) v = (v - mean) / std::sqrt(var + 1e-5);  // weight 1, bias 0 at init
    }
    return out;
  };
  Mat h = row(x, 0), a = attention_ref(layer_norm(h), block.attn(), H);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) h[t][c] += a[t][c];
  Mat f = linear_ref(layer_norm(h), block.mlp().fc());
  for (auto& r : f)
    for (double& v : r) v = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
  Mat m = linear_ref(f, block.mlp().proj());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) h[t][c] += m[t][c];
  expect_mat_near(row(y, 0), h, 1e-4);

  // Changing the last position changes nothing before it.
  auto xv = x.to_vector<float>();
  for (int64_t c = 0; c < C; ++c) xv[(T - 1) * C + c] += 3.0f;
  Mat y2 = row(block(Tensor::from_vector<float>(xv, {B, T, C})), 0), y1 = row(y, 0);
  for (int64_t t = 0; t < T - 1; ++t) EXPECT_EQ(y2[t], y1[t]);
  EXPECT_NE(y2[T - 1], y1[T - 1]);
}
