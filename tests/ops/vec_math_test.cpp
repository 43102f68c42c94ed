// Checks the branch-free f32 math of ops/cpu/vec_math.h against libm (in f64) over dense grids,
// holding it to the accuracy its header comment claims, and checks that every per-ISA build of the
// f32 kernels this CPU can run agrees with the portable build.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kiln/core/rng.h"
#include "kiln/ops/cpu/float_kernels.h"
#include "kiln/ops/cpu/vec_math.h"

namespace kiln::ops::cpu {
namespace portable { extern const FloatKernels kFloatKernels; }
namespace avx2 { extern const FloatKernels kFloatKernels; }
namespace avx512 { extern const FloatKernels kFloatKernels; }
}  // namespace kiln::ops::cpu

using namespace kiln::ops::cpu;

namespace {

// Distance from `got` to the exact value in units of the f32 spacing at the exact value.
double ulp_error(float got, double exact) {
  if (std::isinf(exact) || std::isinf(got)) return got == exact ? 0.0 : INFINITY;
  double a = std::fabs(exact);
  int e;
  std::frexp(a < std::numeric_limits<float>::min() ? std::numeric_limits<float>::min() : a, &e);
  double ulp = std::ldexp(1.0, e - 24);  // f32 has 24 significant bits
  return std::fabs(static_cast<double>(got) - exact) / ulp;
}

// x in [lo, hi] with the given step, as floats.
std::vector<float> grid(double lo, double hi, double step) {
  std::vector<float> v;
  for (double x = lo; x <= hi; x += step) v.push_back(static_cast<float>(x));
  return v;
}

struct Worst {
  double err = 0;
  float at = 0;
  void update(double e, float x) {
    if (e > err || std::isnan(e)) {
      err = e;
      at = x;
    }
  }
};

}  // namespace

TEST(VecMath, ExpWithin2UlpOnMinus20To20) {
  Worst w;
  for (float x : grid(-20, 20, 1e-4)) w.update(ulp_error(vm_exp(x), std::exp(static_cast<double>(x))), x);
  EXPECT_LE(w.err, 2.0) << "worst at x = " << w.at;
}

TEST(VecMath, ExpOverflowUnderflowAndSubnormalResults) {
  EXPECT_EQ(vm_exp(89.0f), INFINITY);
  EXPECT_EQ(vm_exp(INFINITY), INFINITY);
  EXPECT_EQ(vm_exp(-INFINITY), 0.0f);
  EXPECT_EQ(vm_exp(-200.0f), 0.0f);
  EXPECT_TRUE(std::isnan(vm_exp(NAN)));
  EXPECT_EQ(vm_exp(0.0f), 1.0f);
  // Near the top of the range and down into subnormal results, still within 2 ulp of the
  // (subnormal-spaced) exact value.
  Worst w;
  for (float x : grid(-103, 88.7, 1e-3)) {
    double exact = std::exp(static_cast<double>(x));
    double spacing = std::ldexp(1.0, -149);
    double err = exact < std::numeric_limits<float>::min() ? std::fabs(vm_exp(x) - exact) / spacing
                                                             : ulp_error(vm_exp(x), exact);
    w.update(err, x);
  }
  EXPECT_LE(w.err, 2.0) << "worst at x = " << w.at;
}

TEST(VecMath, LogWithin2UlpOnPositiveRange) {
  Worst w;
  // Geometric grid over (0, 1e6], subnormals included, plus a fine linear grid around 1 where
  // the result is small and relative accuracy is hardest.
  for (double x = 1e-44; x <= 1e6; x *= 1.0001) {
    float xf = static_cast<float>(x);
    w.update(ulp_error(vm_log(xf), std::log(static_cast<double>(xf))), xf);
  }
  for (float x : grid(0.5, 2.0, 1e-6)) w.update(ulp_error(vm_log(x), std::log(static_cast<double>(x))), x);
  EXPECT_LE(w.err, 2.0) << "worst at x = " << w.at;
  EXPECT_EQ(vm_log(0.0f), -INFINITY);
  EXPECT_EQ(vm_log(INFINITY), INFINITY);
  EXPECT_TRUE(std::isnan(vm_log(-1.0f)));
  EXPECT_TRUE(std::isnan(vm_log(NAN)));
  EXPECT_EQ(vm_log(1.0f), 0.0f);
}

TEST(VecMath, TanhSigmoidErfAbsoluteError) {
  Worst t, s, e;
  for (float x : grid(-20, 20, 1e-4)) {
    double xd = x;
    t.update(std::fabs(vm_tanh(x) - std::tanh(xd)), x);
    s.update(std::fabs(vm_sigmoid(x) - 1.0 / (1.0 + std::exp(-xd))), x);
    e.update(std::fabs(vm_erf(x) - std::erf(xd)), x);
  }
  EXPECT_LE(t.err, 3e-7) << "tanh worst at x = " << t.at;
  EXPECT_LE(s.err, 3e-7) << "sigmoid worst at x = " << s.at;
  EXPECT_LE(e.err, 2e-7) << "erf worst at x = " << e.at;
  EXPECT_EQ(vm_tanh(INFINITY), 1.0f);
  EXPECT_EQ(vm_tanh(-INFINITY), -1.0f);
  EXPECT_EQ(vm_sigmoid(-INFINITY), 0.0f);
  EXPECT_EQ(vm_sigmoid(INFINITY), 1.0f);
  EXPECT_EQ(vm_erf(INFINITY), 1.0f);
  EXPECT_EQ(vm_erf(-INFINITY), -1.0f);
}

// GELU (tanh form) as x * sigmoid(2u): relative error against the f64 tanh formula, and its
// derivative against the analytic one; far tails go to 0 and x, NaN propagates.
TEST(VecMath, GeluTanhAndItsGradient) {
  double worst = 0, worst_grad = 0;
  for (float x : grid(-12, 12, 1e-3)) {
    const double xd = x, u = 0.7978845608028654 * (xd + 0.044715 * xd * xd * xd), t = std::tanh(u);
    const double want = xd / (1 + std::exp(-2 * u));  // = 0.5 x (1 + tanh u), without its cancellation
    const double du = 0.7978845608028654 * (1 + 3 * 0.044715 * xd * xd);
    const double want_grad = 0.5 * (1 + t) + 0.5 * xd * (1 - t * t) * du;
    // Relative where the value matters; in the far negative tail (values below 1e-6) the f32
    // rounding of the exp argument (|-2u| up to 142) dominates, so absolute there.
    const double err = std::fabs(vm_gelu_tanh(x) - want);
    worst = std::max(worst, x > -5 ? err / std::max(std::fabs(want), 1e-30) : err * 1e6);
    worst_grad = std::max(worst_grad, std::fabs(vm_gelu_tanh_grad(x) - want_grad));
  }
  EXPECT_LT(worst, 4e-6);  // at x = -5 the argument -2u = 16.9 carries 1e-7 relative rounding
  EXPECT_LT(worst_grad, 4e-6);  // the derivative reaches 1.13; a few f32 roundings of its terms
  EXPECT_EQ(vm_gelu_tanh(-30.0f), 0.0f);
  EXPECT_EQ(vm_gelu_tanh(30.0f), 30.0f);
  EXPECT_EQ(vm_gelu_tanh(std::numeric_limits<float>::infinity()), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(vm_gelu_tanh(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(vm_gelu_tanh_grad(-30.0f), 0.0f);
  EXPECT_EQ(vm_gelu_tanh_grad(30.0f), 1.0f);
}

TEST(VecMath, TanhKeepsRelativeAccuracyNearZero) {
  // Where tanh(x) ~ x the absolute bound says little: hold it to a few ulp there.
  Worst w;
  for (float x : grid(-0.7, 0.7, 1e-5))
    if (x != 0) w.update(ulp_error(vm_tanh(x), std::tanh(static_cast<double>(x))), x);
  EXPECT_LE(w.err, 4.0) << "worst at x = " << w.at;
}

// ---------------------------------------------------------------- per-ISA kernels

namespace {

std::vector<const FloatKernels*> runnable_isas() {
  __builtin_cpu_init();
  std::vector<const FloatKernels*> out;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out.push_back(&avx2::kFloatKernels);
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq"))
    out.push_back(&avx512::kFloatKernels);
  return out;
}

std::vector<float> random_floats(size_t n, double lo, double hi, uint64_t seed) {
  kiln::Generator g(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(lo + (hi - lo) * g.next_uniform());
  return v;
}

// Vector and scalar builds may differ by FMA contraction and operation order: a few ulp.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    bool ok = (std::isnan(got[i]) && std::isnan(want[i])) ||
              std::fabs(got[i] - want[i]) <= 1e-6f * std::max(1.0f, std::fabs(want[i]));
    if (!ok) {
      ADD_FAILURE() << what << ": element " << i << " differs: " << got[i] << " vs portable " << want[i];
      return;
    }
  }
}

}  // namespace

TEST(FloatKernels, SelectedKernelIsOneOfTheBuilds) {
  const FloatKernels& k = float_kernels();
  EXPECT_TRUE(&k == &portable::kFloatKernels || &k == &avx2::kFloatKernels || &k == &avx512::kFloatKernels);
  EXPECT_EQ(simd_level(), k.isa);
  EXPECT_EQ(float_kernels_portable().isa, "portable");
}

TEST(FloatKernels, EveryRunnableIsaAgreesWithPortable) {
  const FloatKernels& ref = float_kernels_portable();
  auto isas = runnable_isas();
  if (isas.empty()) GTEST_SKIP() << "no vector ISA on this CPU";
  const size_t n = 1037;  // not a multiple of any vector width: exercises the tails
  std::vector<float> a = random_floats(n, -4, 4, 1), b = random_floats(n, -4, 4, 2), pos = random_floats(n, 0.01, 9, 3);
  for (const FloatKernels* k : isas) {
    std::string isa(k->isa);
    for (int op = 0; op <= static_cast<int>(BinaryOp::minimum); ++op) {
      const auto bop = static_cast<BinaryOp>(op);
      const std::vector<float>& x = bop == BinaryOp::pow ? pos : a;
      for (int64_t sa = 0; sa <= 1; ++sa)
        for (int64_t sb = 0; sb <= 1; ++sb) {
          std::vector<float> o1(n), o2(n);
          k->binary(bop, o1.data(), x.data(), sa, b.data(), sb, n);
          ref.binary(bop, o2.data(), x.data(), sa, b.data(), sb, n);
          expect_close(o1, o2, isa + " binary op " + std::to_string(op) + " sa=" + std::to_string(sa) +
                                   " sb=" + std::to_string(sb));
        }
    }
    for (int op = 0; op <= static_cast<int>(UnaryOp::silu); ++op) {
      const auto uop = static_cast<UnaryOp>(op);
      bool positive = uop == UnaryOp::log || uop == UnaryOp::sqrt || uop == UnaryOp::rsqrt;
      const std::vector<float>& x = positive ? pos : a;
      std::vector<float> o1(n), o2(n);
      k->unary(uop, o1.data(), x.data(), n);
      ref.unary(uop, o2.data(), x.data(), n);
      expect_close(o1, o2, isa + " unary op " + std::to_string(op));
    }
    for (int op = 0; op <= static_cast<int>(UnaryBackwardOp::sigmoid_from_out); ++op) {
      std::vector<float> o1(n), o2(n);
      k->unary_backward(static_cast<UnaryBackwardOp>(op), o1.data(), b.data(), a.data(), n);
      ref.unary_backward(static_cast<UnaryBackwardOp>(op), o2.data(), b.data(), a.data(), n);
      expect_close(o1, o2, isa + " unary backward op " + std::to_string(op));
    }
    std::vector<float> o1(n), o2(n);
    k->clamp(o1.data(), a.data(), -1.5f, 2.0f, n);
    ref.clamp(o2.data(), a.data(), -1.5f, 2.0f, n);
    expect_close(o1, o2, isa + " clamp");
    std::vector<float> y1 = b, y2 = b;
    k->axpy(y1.data(), 0.75f, a.data(), n);
    ref.axpy(y2.data(), 0.75f, a.data(), n);
    expect_close(y1, y2, isa + " axpy");
    k->scale(y1.data(), -1.25f, n);
    ref.scale(y2.data(), -1.25f, n);
    expect_close(y1, y2, isa + " scale");
    std::vector<float> big = random_floats(5000, -1, 1, 4);
    EXPECT_EQ(k->sum(big.data(), 5000), ref.sum(big.data(), 5000)) << isa << " sum (same lane order)";
  }
}
