// linear_act: the activation fused into the GEMM epilogue must give what linear followed by the
// activation gives, forward and backward, and its gradients must pass finite differences.
#include <gtest/gtest.h>

#include "kiln/autograd/engine.h"
#include "kiln/autograd/gradcheck.h"
#include "kiln/core/grad_mode.h"
#include "kiln/core/rng.h"
#include "kiln/ops/ops.h"

namespace kiln {
namespace {

using ops::LinearActivation;

Tensor unfused(const Tensor& x, const Tensor& w, const Tensor& b, LinearActivation act) {
  Tensor y = ops::linear(x, w, b);
  if (act == LinearActivation::relu) return ops::relu(y);
  if (act == LinearActivation::gelu) return ops::gelu(y);
  if (act == LinearActivation::gelu_tanh) return ops::gelu(y, ops::GeluApprox::tanh);
  return y;
}

void expect_near(const Tensor& a, const Tensor& b, double tol) {
  auto av = a.to_vector<float>(), bv = b.to_vector<float>();
  ASSERT_EQ(av.size(), bv.size());
  for (size_t i = 0; i < av.size(); ++i) ASSERT_NEAR(av[i], bv[i], tol) << "element " << i;
}

TEST(LinearAct, ForwardMatchesUnfusedOnAwkwardShapes) {
  Generator g(3);
  for (auto act : {LinearActivation::none, LinearActivation::relu, LinearActivation::gelu,
                   LinearActivation::gelu_tanh})
    for (int64_t rows : {1, 7, 33})
      for (int64_t in : {1, 9, 257})
        for (int64_t out : {1, 17, 40}) {
          Tensor x = randn({rows, in}, g), w = randn({out, in}, g), b = randn({out}, g);
          NoGradGuard no_grad;
          expect_near(ops::linear_act(x, w, b, act), unfused(x, w, b, act), 2e-5 * (in + 4));
          expect_near(ops::linear_act(x, w, Tensor(), act), unfused(x, w, Tensor(), act), 2e-5 * (in + 4));
        }
}

TEST(LinearAct, TrainingGradientsMatchUnfused) {
  for (auto act : {LinearActivation::relu, LinearActivation::gelu_tanh}) {
    Generator g(4);
    Tensor x = randn({2, 6, 20}, g), w = randn({30, 20}, g), b = randn({30}, g);
    std::vector<Tensor> grads[2];
    for (int fused = 0; fused < 2; ++fused) {
      Tensor xs = x.detach(), ws = w.detach(), bs = b.detach();
      for (Tensor* t : {&xs, &ws, &bs}) t->set_requires_grad(true);
      Tensor y = fused ? ops::linear_act(xs, ws, bs, act) : unfused(xs, ws, bs, act);
      autograd::backward(ops::sum(ops::mul(y, y)));
      grads[fused] = {xs.grad(), ws.grad(), bs.grad()};
    }
    for (int i = 0; i < 3; ++i) expect_near(grads[0][i], grads[1][i], 1e-3);
  }
}

TEST(LinearAct, GradcheckFusedRelu) {
  Generator g(5);
  Tensor x = randn({4, 5}, g, DType::f64), w = randn({3, 5}, g, DType::f64), b = randn({3}, g, DType::f64);
  for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
  auto r = autograd::gradcheck(
      [](const std::vector<Tensor>& in) { return ops::linear_act(in[0], in[1], in[2], LinearActivation::relu); },
      {x, w, b});
  EXPECT_TRUE(r.ok) << r.message;
}

}  // namespace
}  // namespace kiln
