// Tests for ops/training_ops.h and its graph kernels (graph/kernels_training.cpp): one optimiser
// step against the update formulas of ONNX's preview.training operators, written out per element
// here, for one and for several parameter tensors (ONNX's variadic input order).
#include "graph/node_kernel_util.h"
#include "kiln/ops/training_ops.h"

namespace kiln::graph {
namespace {

using namespace testing;

Tensor f(const std::vector<double>& v, DType dt = DType::f32) {
  return to_dtype_raw(Tensor::from_vector<double>(v, {static_cast<int64_t>(v.size())}), dt);
}
// The learning rate as f64, so hand-worked values hold exactly (the ops take f32 too).
Tensor rate(double r) { return Tensor::from_vector<double>({r}, Shape{}); }

TEST(TrainingOps, AdagradStep) {
  // Hand-worked: R = 0.1, T = 2, decay 0.5 -> r = 0.1 / 2 = 0.05; x = 1, g = 3, h = 7, norm 0:
  // h_new = 7 + 9 = 16, x_new = 1 - 0.05 * 3 / (4 + 0) = 0.9625.
  std::vector<Tensor> out = ops::adagrad(rate(0.1), i64_scalar(2), {f({1.0}, DType::f64)}, {f({3.0}, DType::f64)},
                                         {f({7.0}, DType::f64)}, 0.5, 0.0, 0.0);
  ASSERT_EQ(out.size(), 2u);
  expect_near(out[0], {1}, {0.9625}, 1e-15);
  expect_near(out[1], {1}, {16.0}, 1e-15);
  // Two tensors through the kernel: inputs (R, T, X1, X2, G1, G2, H1, H2) -> (X1', X2', H1', H2').
  const double R = 0.3, T = 4, decay = 0.1, eps = 1e-5, norm = 0.01;
  std::vector<double> x1 = {1, -2}, g1 = {0.5, 0.25}, h1 = {1, 2}, x2 = {3}, g2 = {-1}, h2 = {0.5};
  Node n = make_node("adagrad", {{"decay_factor", decay}, {"epsilon", eps}, {"norm_coefficient", norm}});
  std::vector<Tensor> y = run(n, {rate(R), i64_scalar(4), f(x1), f(x2), f(g1), f(g2), f(h1), f(h2)});
  ASSERT_EQ(y.size(), 4u);
  auto ref = [&](const std::vector<double>& x, const std::vector<double>& g, const std::vector<double>& h,
                 std::vector<double>& xn, std::vector<double>& hn) {
    for (size_t i = 0; i < x.size(); ++i) {
      const double r = R / (1 + T * decay), gr = norm * x[i] + g[i];
      hn.push_back(h[i] + gr * gr);
      xn.push_back(x[i] - r * gr / (std::sqrt(hn.back()) + eps));
    }
  };
  std::vector<double> x1n, h1n, x2n, h2n;
  ref(x1, g1, h1, x1n, h1n);
  ref(x2, g2, h2, x2n, h2n);
  expect_near(y[0], {2}, x1n, 1e-6);
  expect_near(y[1], {1}, x2n, 1e-6);
  expect_near(y[2], {2}, h1n, 1e-6);
  expect_near(y[3], {1}, h2n, 1e-6);
}

TEST(TrainingOps, MomentumStandardAndNesterov) {
  const double R = 0.1, alpha = 0.9, beta = 0.5, norm = 0.01;
  std::vector<double> x = {1, 2}, g = {-1, 0.5}, v = {0.2, -0.4};
  for (int64_t T : {0, 3})
    for (bool nesterov : {false, true}) {
      Node n = make_node("momentum", {{"alpha", alpha},
                                      {"beta", beta},
                                      {"norm_coefficient", norm},
                                      {"mode", std::string(nesterov ? "nesterov" : "standard")}});
      std::vector<Tensor> y = run(n, {rate(R), i64_scalar(T), f(x, DType::f64), f(g, DType::f64), f(v, DType::f64)});
      ASSERT_EQ(y.size(), 2u);
      std::vector<double> xn, vn;
      for (size_t i = 0; i < x.size(); ++i) {
        const double gr = norm * x[i] + g[i];
        vn.push_back(alpha * v[i] + (T > 0 ? beta : 1.0) * gr);
        xn.push_back(nesterov ? x[i] - R * (gr + alpha * vn.back()) : x[i] - R * vn.back());
      }
      EXPECT_EQ(y[0].dtype(), DType::f64);
      expect_near(y[0], {2}, xn, 1e-14);
      expect_near(y[1], {2}, vn, 1e-14);
    }
  expect_error([&] {
    run(make_node("momentum", {{"alpha", alpha}, {"beta", beta}, {"norm_coefficient", norm}, {"mode", std::string("heavy")}}),
        {rate(R), i64_scalar(1), f(x), f(g), f(v)});
  }, {"momentum_node", "mode"});
  expect_error([&] {
    run(make_node("momentum", {{"beta", beta}, {"norm_coefficient", norm}, {"mode", std::string("standard")}}),
        {rate(R), i64_scalar(1), f(x), f(g), f(v)});
  }, {"momentum_node", "alpha"});
}

TEST(TrainingOps, AdamStepWithBiasCorrection) {
  // Hand-worked first step (T = 1) with defaults alpha 0.9, beta 0.999, epsilon ~0: v = 0.1 g,
  // h = 0.001 g^2, r = R sqrt(0.001) / 0.1, so x moves by R * sign(g) (Adam's unit first step).
  std::vector<Tensor> out = ops::adam(rate(0.01), i64_scalar(1), {f({2.0, -1.0})}, {f({4.0, -0.5})}, {f({0.0, 0.0})},
                                      {f({0.0, 0.0})}, 0.9, 0.999, 1e-12);
  ASSERT_EQ(out.size(), 3u);
  expect_near(out[0], {2}, {1.99, -0.99}, 1e-6);
  expect_near(out[1], {2}, {0.4, -0.05}, 1e-7);
  expect_near(out[2], {2}, {0.016, 0.00025}, 1e-8);
  // Every attribute, T = 0 (no bias correction) and T = 5, two tensors through the kernel.
  const double R = 0.05, alpha = 0.8, beta = 0.95, eps = 1e-3, norm = 0.02, post = 0.1;
  std::vector<double> x1 = {1, -1}, g1 = {0.3, 2}, v1 = {0.1, 0}, h1 = {0.2, 1}, x2 = {5}, g2 = {-3}, v2 = {1}, h2 = {4};
  for (int64_t T : {0, 5}) {
    Node n = make_node("adam", {{"alpha", alpha}, {"beta", beta}, {"epsilon", eps}, {"norm_coefficient", norm},
                                {"norm_coefficient_post", post}});
    std::vector<Tensor> y =
        run(n, {rate(R), i64_scalar(T), f(x1), f(x2), f(g1), f(g2), f(v1), f(v2), f(h1), f(h2)});
    ASSERT_EQ(y.size(), 6u);
    auto step = [&](const std::vector<double>& x, const std::vector<double>& g, const std::vector<double>& v,
                    const std::vector<double>& h, int which) {
      std::vector<double> r;
      for (size_t i = 0; i < x.size(); ++i) {
        const double gr = norm * x[i] + g[i];
        const double vn = alpha * v[i] + (1 - alpha) * gr, hn = beta * h[i] + (1 - beta) * gr * gr;
        const double ra = T > 0 ? R * std::sqrt(1 - std::pow(beta, T)) / (1 - std::pow(alpha, T)) : R;
        r.push_back(which == 0 ? (1 - post) * (x[i] - ra * vn / (std::sqrt(hn) + eps)) : which == 1 ? vn : hn);
      }
      return r;
    };
    for (int which = 0; which < 3; ++which) {
      expect_near(y[2 * which], {2}, step(x1, g1, v1, h1, which), 1e-6);
      expect_near(y[2 * which + 1], {1}, step(x2, g2, v2, h2, which), 1e-6);
    }
  }
}

TEST(TrainingOps, BadInputsAreRefused) {
  expect_error([] { run(make_node("adam"), {rate(0.1), i64_scalar(1), f({1}), f({1}), f({1})}); },
               {"adam_node", "4 lists"});
  expect_error([] { ops::adagrad(rate(0.1), i64_scalar(1), {f({1, 2})}, {f({1})}, {f({1, 2})}); },
               {"adagrad", "gradient 0"});
  expect_error([] { ops::adagrad(rate(0.1), f({1}), {f({1})}, {f({1})}, {f({1})}); }, {"adagrad", "T must be"});
  expect_error([] { ops::momentum(rate(0.1), i64_scalar(1), {f({1})}, {f({1}), f({2})}, {f({1})}, 0.9, 1, 0); },
               {"momentum", "1 parameters but 2"});
}

}  // namespace
}  // namespace kiln::graph
