#include <gtest/gtest.h>

#include "kiln/autograd/engine.h"
#include "kiln/autograd/gradcheck.h"
#include "kiln/core/rng.h"
#include "kiln/ops/ops.h"

using namespace kiln;

TEST(Ops, AddBroadcastsAndBackward) {
  Tensor a = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector<float>({10, 20, 30}, {3});
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  Tensor c = a + b;
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{11, 22, 33, 14, 25, 36}));
  autograd::backward(ops::sum(c));
  EXPECT_EQ(b.grad().to_vector<float>(), (std::vector<float>{2, 2, 2}));
  EXPECT_EQ(a.grad().to_vector<float>(), (std::vector<float>(6, 1.0f)));
}

TEST(Ops, MatmulMatchesReference) {
  Generator g(1);
  Tensor a = randn({5, 7}, g), b = randn({7, 3}, g);
  Tensor c = ops::matmul(a, b);
  auto av = a.to_vector<float>(), bv = b.to_vector<float>(), cv = c.to_vector<float>();
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 3; ++j) {
      double s = 0;
      for (int k = 0; k < 7; ++k) s += av[i * 7 + k] * bv[k * 3 + j];
      EXPECT_NEAR(cv[i * 3 + j], s, 1e-4);
    }
}

TEST(Ops, GradcheckMatmulLinear) {
  Generator g(2);
  Tensor a = randn({3, 4}, g, DType::f64), w = randn({5, 4}, g, DType::f64), b = randn({5}, g, DType::f64);
  a.set_requires_grad(true);
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  auto r = autograd::gradcheck([](const std::vector<Tensor>& x) { return ops::linear(x[0], x[1], x[2]); }, {a, w, b});
  EXPECT_TRUE(r.ok) << r.message;
  auto r2 = autograd::gradcheck(
      [](const std::vector<Tensor>& x) { return ops::matmul(ops::transpose(x[0], 0, 1), ops::gelu(ops::transpose(x[1], 0, 1))); },
      {ops::transpose(w, 0, 1).detach().set_requires_grad(true), a});
  EXPECT_TRUE(r2.ok) << r2.message;
}
