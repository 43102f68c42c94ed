// Optimiser steps against the update formulas written out by hand in double, state-dict round
// trips and gradient clipping.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/core/error.h"
#include "kiln/core/rng.h"
#include "kiln/optim/optimizer.h"

using namespace kiln;
using namespace kiln::optim;

namespace {

Tensor param(const std::vector<float>& v) {
  Tensor p = Tensor::from_vector<float>(v);
  p.set_requires_grad(true);
  return p;
}

// The gradients fed at steps 0, 1, 2 (fixed, so the expected values are easy to follow).
const std::vector<std::vector<float>> kGrads = {{0.5f, -1.0f, 2.0f}, {0.25f, 0.5f, -1.5f}, {-0.75f, 1.0f, 0.1f}};
const std::vector<float> kInit = {1.0f, -2.0f, 0.5f};

void expect_close(const Tensor& t, const std::vector<double>& want, double tol = 1e-6) {
  auto got = t.to_vector<double>();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol * std::max(1.0, std::abs(want[i]))) << "element " << i;
}

}  // namespace

TEST(Sgd, MomentumNesterovWeightDecayByHand) {
  for (bool nesterov : {false, true}) {
    Tensor p = param(kInit);
    SgdOptions o;
    o.lr = 0.1;
    o.momentum = 0.9;
    o.weight_decay = 0.01;
    o.nesterov = nesterov;
    auto opt = make_sgd({p}, o);
    std::vector<double> x(kInit.begin(), kInit.end()), buf(3, 0.0);
    for (int s = 0; s < 3; ++s) {
      p.set_grad(Tensor::from_vector<float>(kGrads[s]));
      opt->step();
      for (int j = 0; j < 3; ++j) {
        double g = kGrads[s][j] + 0.01 * x[j];
        buf[j] = s == 0 ? g : 0.9 * buf[j] + g;
        double d = nesterov ? g + 0.9 * buf[j] : buf[j];
        x[j] -= 0.1 * d;
      }
      expect_close(p, x);
    }
  }
}

TEST(Sgd, PlainStepAndSkipsParamsWithoutGrad) {
  Tensor p = param(kInit), q = param({3.0f});
  auto opt = make_sgd({p, q}, SgdOptions{.lr = 0.5});
  p.set_grad(Tensor::from_vector<float>(kGrads[0]));
  opt->step();
  expect_close(p, {1.0 - 0.25, -2.0 + 0.5, 0.5 - 1.0});
  expect_close(q, {3.0});  // no gradient: untouched
}

TEST(Adam, StepsByHand) {
  for (bool decoupled : {false, true}) {
    Tensor p = param(kInit);
    AdamOptions o;
    o.lr = 0.01;
    o.beta1 = 0.8;
    o.beta2 = 0.95;
    o.eps = 1e-6;
    o.weight_decay = 0.1;
    auto opt = decoupled ? make_adamw({p}, o) : make_adam({p}, o);
    EXPECT_EQ(opt->name(), decoupled ? "adamw" : "adam");
    std::vector<double> x(kInit.begin(), kInit.end()), m(3, 0.0), v(3, 0.0);
    for (int s = 0; s < 3; ++s) {
      p.set_grad(Tensor::from_vector<float>(kGrads[s]));
      opt->step();
      int t = s + 1;
      for (int j = 0; j < 3; ++j) {
        double g = kGrads[s][j];
        if (decoupled)
          x[j] *= 1.0 - 0.01 * 0.1;
        else
          g += 0.1 * x[j];
        m[j] = 0.8 * m[j] + 0.2 * g;
        v[j] = 0.95 * v[j] + 0.05 * g * g;
        // PyTorch's placement of eps: denom = sqrt(v) / sqrt(1 - b2^t) + eps.
        double bc1 = 1.0 - std::pow(0.8, t), bc2 = 1.0 - std::pow(0.95, t);
        x[j] -= (0.01 / bc1) * m[j] / (std::sqrt(v[j]) / std::sqrt(bc2) + 1e-6);
      }
      expect_close(p, x, 1e-5);
    }
  }
}

TEST(Adam, EpsPlacementMatchesPyTorch) {
  // One step from m = v = 0: p -= lr * g / (|g| + eps) exactly (bias corrections cancel).
  // A tiny gradient makes eps matter: g = 1e-6, eps = 1e-6 gives a half step.
  Tensor p = param({0.0f});
  auto opt = make_adam({p}, AdamOptions{.lr = 1.0, .eps = 1e-6});
  p.set_grad(Tensor::from_vector<float>({1e-6f}));
  opt->step();
  EXPECT_NEAR(p.to_vector<double>()[0], -0.5, 1e-4);
}

TEST(Optim, StateDictRoundTripGivesIdenticalSteps) {
  for (int kind = 0; kind < 3; ++kind) {
    auto make = [&](Tensor p) -> std::unique_ptr<Optimizer> {
      if (kind == 0) return make_sgd({p}, SgdOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true});
      if (kind == 1) return make_adam({p}, AdamOptions{.lr = 0.01, .weight_decay = 0.01});
      return make_adamw({p}, AdamOptions{.lr = 0.01, .weight_decay = 0.1});
    };
    Generator gen(7);
    Tensor p = randn({1000}, gen).set_requires_grad(true);
    std::vector<Tensor> grads;
    for (int s = 0; s < 4; ++s) grads.push_back(randn({1000}, gen));
    auto opt = make(p);
    for (int s = 0; s < 2; ++s) {
      p.set_grad(grads[s]);
      opt->step();
    }
    OptimState saved = opt->state_dict();
    EXPECT_EQ(saved.at("step").to_vector<int64_t>()[0], 2);
    Tensor p_saved = clone_raw(p);
    for (int s = 2; s < 4; ++s) {
      p.set_grad(grads[s]);
      opt->step();
    }
    std::vector<float> want = p.to_vector<float>();

    Tensor p2 = clone_raw(p_saved).set_requires_grad(true);
    auto opt2 = make(p2);
    opt2->load_state_dict(saved);
    for (int s = 2; s < 4; ++s) {
      p2.set_grad(grads[s]);
      opt2->step();
    }
    EXPECT_EQ(p2.to_vector<float>(), want) << "optimizer kind " << kind;
  }
}

TEST(Optim, LoadStateDictRejectsBadKeys) {
  Tensor p = param(kInit);
  auto opt = make_adam({p}, AdamOptions{});
  p.set_grad(Tensor::from_vector<float>(kGrads[0]));
  opt->step();
  OptimState s = opt->state_dict();
  ASSERT_EQ(s.size(), 3u);

  OptimState extra = s;
  extra["momentum.0"] = Tensor::zeros({3});
  try {
    opt->load_state_dict(extra);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unexpected key 'momentum.0'"), std::string::npos) << e.what();
  }
  OptimState bad_shape = s;
  bad_shape["exp_avg.0"] = Tensor::zeros({4});
  EXPECT_THROW(opt->load_state_dict(bad_shape), ValueError);
  OptimState bad_index = s;
  bad_index["exp_avg.5"] = Tensor::zeros({3});
  EXPECT_THROW(opt->load_state_dict(bad_index), IndexError);
  OptimState half = s;
  half.erase("exp_avg_sq.0");
  EXPECT_THROW(opt->load_state_dict(half), ValueError);
  OptimState no_step = s;
  no_step.erase("step");
  EXPECT_THROW(opt->load_state_dict(no_step), ValueError);
}

TEST(Optim, ZeroGradUndefinesGrads) {
  Tensor p = param(kInit);
  auto opt = make_sgd({p}, SgdOptions{});
  p.set_grad(Tensor::from_vector<float>(kGrads[0]));
  opt->zero_grad();
  EXPECT_FALSE(p.grad().defined());
}

TEST(ClipGradNorm, ScalesToMaxNormAgainstHandNorm) {
  Tensor a = param({1, 2}), b = param({3, 4, 5}), c = param({9});  // c has no grad
  a.set_grad(Tensor::from_vector<float>({3, 4}));
  b.set_grad(Tensor::from_vector<float>({0, 12, 0}));
  double norm = clip_grad_norm({a, b, c}, 6.5);
  EXPECT_NEAR(norm, 13.0, 1e-9);  // sqrt(9 + 16 + 144)
  double s = 6.5 / (13.0 + 1e-6);
  expect_close(a.grad(), {3 * s, 4 * s});
  expect_close(b.grad(), {0, 12 * s, 0});
  // Below the limit nothing changes.
  double norm2 = clip_grad_norm({a, b}, 100.0);
  EXPECT_NEAR(norm2, 6.5, 1e-5);
  expect_close(a.grad(), {3 * s, 4 * s});
}

TEST(ClipGradNorm, LargeGradientsAreDeterministic) {
  Generator gen(3);
  Tensor p = randn({300000}, gen).set_requires_grad(true);
  Tensor g = randn({300000}, gen);
  double want = 0;
  for (float v : g.to_vector<float>()) want += static_cast<double>(v) * v;
  want = std::sqrt(want);
  p.set_grad(clone_raw(g));
  double n1 = clip_grad_norm({p}, 1.0);
  EXPECT_NEAR(n1, want, 1e-9 * want);
  EXPECT_NEAR(clip_grad_norm({p}, 1e9), 1.0, 1e-5);
}
