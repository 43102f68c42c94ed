// The tape: accumulation, explicit output gradients, retain_graph, freed buffers, no_grad,
// detach, and in-place misuse caught through version counters. Expected values are by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/autograd/engine.h"
#include "kiln/autograd/gradcheck.h"
#include "kiln/core/grad_mode.h"
#include "kiln/ops/autograd_record.h"
#include "kiln/ops/ops.h"

using namespace kiln;

namespace {
Tensor leaf(std::vector<double> v) { return Tensor::from_vector<double>(v).set_requires_grad(true); }
std::vector<double> grad_of(const Tensor& t) { return t.grad().to_vector<double>(); }
}  // namespace

TEST(Autograd, ChainRuleByHand) {
  Tensor x = leaf({1.0, 2.0, 3.0});
  // y = sum(x^2 * 3 + x) -> dy/dx = 6x + 1
  Tensor y = ops::sum(ops::add(ops::mul(ops::mul(x, x), 3.0), x));
  autograd::backward(y);
  EXPECT_EQ(grad_of(x), (std::vector<double>{7.0, 13.0, 19.0}));
}

TEST(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = leaf({2.0});
  autograd::backward(ops::sum(ops::mul(x, 3.0)));
  autograd::backward(ops::sum(ops::mul(x, x)));
  EXPECT_EQ(grad_of(x), (std::vector<double>{3.0 + 4.0}));
}

TEST(Autograd, SharedSubexpressionSumsBothPaths) {
  Tensor x = leaf({1.5});
  Tensor h = ops::exp(x);
  Tensor y = ops::sum(ops::add(ops::mul(h, 2.0), ops::mul(h, h)));  // 2e^x + e^2x
  autograd::backward(y);
  double e = std::exp(1.5);
  EXPECT_NEAR(grad_of(x)[0], 2 * e + 2 * e * e, 1e-9);
}

TEST(Autograd, ExplicitOutputGradient) {
  Tensor x = leaf({1.0, 2.0});
  Tensor y = ops::mul(x, x);
  autograd::backward(y, Tensor::from_vector<double>({10.0, 100.0}));
  EXPECT_EQ(grad_of(x), (std::vector<double>{20.0, 400.0}));
}

TEST(Autograd, NonScalarWithoutGradientIsAnError) {
  Tensor x = leaf({1.0, 2.0});
  EXPECT_THROW(autograd::backward(ops::mul(x, 2.0)), ValueError);
  Tensor c = Tensor::from_vector<double>({1.0});
  EXPECT_THROW(autograd::backward(ops::mul(c, 2.0)), ValueError);  // nothing requires grad
}

TEST(Autograd, SecondBackwardNeedsRetainGraph) {
  Tensor x = leaf({3.0});
  Tensor y = ops::sum(ops::mul(x, x));
  autograd::backward(y, Tensor(), {.retain_graph = true});
  autograd::backward(y);  // allowed: the first call kept the buffers
  EXPECT_EQ(grad_of(x), (std::vector<double>{12.0}));
  try {
    autograd::backward(y);  // the buffers were freed by the second call
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("second time"), std::string::npos) << e.what();
  }
}

TEST(Autograd, NoGradAndDetachRecordNothing) {
  Tensor x = leaf({1.0});
  {
    NoGradGuard guard;
    Tensor y = ops::mul(x, 2.0);
    EXPECT_FALSE(y.requires_grad());
  }
  Tensor d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.raw_data(), x.raw_data());  // shares the data
  Tensor y = ops::sum(ops::add(ops::mul(x, d), x));  // d is a constant: dy/dx = d + 1 = 2
  autograd::backward(y);
  EXPECT_EQ(grad_of(x), (std::vector<double>{2.0}));
}

TEST(Autograd, InPlaceOnSavedTensorIsCaught) {
  Tensor x = leaf({1.0, 2.0});
  Tensor h = ops::mul(x, 1.0);  // a non-leaf...
  Tensor a = Tensor::from_vector<double>({5.0, 6.0});
  Tensor y = ops::sum(ops::mul(a, h));  // ...mul saves `a` for h's gradient
  {
    NoGradGuard guard;
    ops::add_(a, Tensor::from_vector<double>({1.0, 1.0}));
  }
  try {
    autograd::backward(y);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("modified by an in-place operation"), std::string::npos) << e.what();
  }
}

TEST(Autograd, InPlaceOnLeafRequiringGradIsRefused) {
  Tensor x = leaf({1.0});
  EXPECT_THROW(ops::mul_(x, 2.0), ValueError);
  NoGradGuard guard;
  ops::mul_(x, 2.0);  // fine outside grad mode (how optimisers update)
  EXPECT_EQ(x.to_vector<double>(), (std::vector<double>{2.0}));
}

TEST(Autograd, ViewsCarryGradientsBack) {
  Tensor x = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}).set_requires_grad(true);
  // y = sum of the transposed view's first row, weighted: picks x[0][0] and x[1][0]
  Tensor row = ops::slice(ops::transpose(x, 0, 1), 0, 0, 1);
  autograd::backward(ops::sum(ops::mul(row, Tensor::from_vector<double>({10.0, 20.0}, {1, 2}))));
  EXPECT_EQ(grad_of(x), (std::vector<double>{10, 0, 0, 20, 0, 0}));
}

TEST(Gradcheck, CatchesAWrongGradient) {
  // A deliberately wrong "op": forward x^2 but gradient recorded as x (instead of 2x). The checker
  // must reject it, or it could not be trusted to pass the real ops.
  auto wrong = [](const std::vector<Tensor>& in) {
    Tensor x = in[0];
    Tensor out = ops::mul(x.detach(), x.detach());
    return ops::record("wrong_square", {x}, out, [x_ = SavedTensor(x, "wrong")](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{ops::mul(g, x_.get())};
    });
  };
  Tensor x = Tensor::from_vector<double>({0.5, -1.5, 2.0}).set_requires_grad(true);
  EXPECT_FALSE(autograd::gradcheck(wrong, {x}).ok);
  auto right = [](const std::vector<Tensor>& in) { return ops::mul(in[0], in[0]); };
  EXPECT_TRUE(autograd::gradcheck(right, {x}).ok);
}
