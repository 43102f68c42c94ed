// Tests for the forward-only inference ops (ops/inference_ops.h) except einsum: each op against
// ONNX's documented examples and a plain-loop or closed-form reference, in every dtype it takes,
// on strided, broadcast and large (threaded) inputs, and bad inputs rejected by name.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "kiln/core/rng.h"
#include "kiln/ops/inference_ops.h"
#include "kiln/ops/ops.h"

using namespace kiln;

namespace {

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

void expect_near(const Tensor& got, const std::vector<double>& want, double tol) {
  std::vector<double> g = vals(got);
  ASSERT_EQ(g.size(), want.size());
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(g[i])) << "at " << i;
      continue;
    }
    if (g[i] == want[i]) continue;  // infinities included
    EXPECT_NEAR(g[i], want[i], tol * std::max(1.0, std::abs(want[i]))) << "at " << i;
  }
}

template <typename E, typename F>
void expect_error(F f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

Tensor f32(const std::vector<float>& v, const Shape& s) { return Tensor::from_vector<float>(v, s); }
Tensor f32(const std::vector<float>& v) { return Tensor::from_vector<float>(v); }

// ---------------------------------------------------------------- unary float ops

struct UnaryRow {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;  // an independent formula, in double
  double lo, hi;
};

double round_half_even(double v) {
  double f = std::floor(v), d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return std::fmod(f, 2.0) == 0 ? f : f + 1;
}

std::vector<UnaryRow> unary_rows() {
  const double kAlpha = 1.67326319217681884765625, kGamma = 1.05070102214813232421875;  // ONNX's defaults
  return {
      {"erf", [](const Tensor& x) { return ops::erf(x); },
       [](double v) {  // erf by its Maclaurin series (|v| <= 3 converges well in double)
         double term = v, s = v;
         for (int n = 1; n < 120; ++n) {
           term *= -v * v / n;
           s += term / (2 * n + 1);
         }
         return s * 2 / std::sqrt(M_PI);
       },
       -3, 3},
      {"leaky_relu", [](const Tensor& x) { return ops::leaky_relu(x, 0.3); },
       [](double v) { return std::max(v, 0.0) + 0.3 * std::min(v, 0.0); }, -3, 3},
      {"hard_sigmoid", [](const Tensor& x) { return ops::hard_sigmoid(x, 0.25, 0.4); },
       [](double v) { return std::min(1.0, std::max(0.0, 0.25 * v + 0.4)); }, -5, 5},
      {"hard_swish", [](const Tensor& x) { return ops::hard_swish(x); },
       [](double v) { return v * std::min(std::max(v + 3, 0.0), 6.0) / 6; }, -5, 5},
      {"elu", [](const Tensor& x) { return ops::elu(x, 0.7); },
       [](double v) { return v > 0 ? v : 0.7 * (std::exp(v) - 1); }, -4, 4},
      {"selu", [](const Tensor& x) { return ops::selu(x); },
       [=](double v) { return kGamma * (v > 0 ? v : kAlpha * (std::exp(v) - 1)); }, -4, 4},
      {"softplus", [](const Tensor& x) { return ops::softplus(x); },
       [](double v) { return std::log(1 + std::exp(v)); }, -20, 20},
      {"softsign", [](const Tensor& x) { return ops::softsign(x); },
       [](double v) { return v / (1 + std::abs(v)); }, -10, 10},
      {"reciprocal", [](const Tensor& x) { return ops::reciprocal(x); }, [](double v) { return 1 / v; }, 0.5, 8},
      {"floor", [](const Tensor& x) { return ops::floor(x); },
       [](double v) { return static_cast<double>(static_cast<int64_t>(v + 100) - 100); }, -7, 7},
      {"ceil", [](const Tensor& x) { return ops::ceil(x); },
       [](double v) { return -static_cast<double>(static_cast<int64_t>(-v + 100) - 100); }, -7, 7},
      {"round", [](const Tensor& x) { return ops::round(x); }, round_half_even, -7, 7},
      {"sin", [](const Tensor& x) { return ops::sin(x); }, [](double v) { return std::cos(v - M_PI / 2); }, -6, 6},
      {"cos", [](const Tensor& x) { return ops::cos(x); }, [](double v) { return std::sin(v + M_PI / 2); }, -6, 6},
  };
}

TEST(InferenceUnary, MatchReferenceInF32AndF64) {
  Generator g(7);
  for (const UnaryRow& row : unary_rows()) {
    SCOPED_TRACE(row.name);
    for (DType dt : {DType::f32, DType::f64}) {
      Tensor x = uniform({5, 7}, row.lo, row.hi, g, dt);
      Tensor y = row.op(x);
      EXPECT_EQ(y.dtype(), dt);
      EXPECT_EQ(y.shape(), x.shape());
      std::vector<double> want;
      for (double v : vals(x)) want.push_back(row.ref(v));
      expect_near(y, want, dt == DType::f64 ? 1e-12 : 2e-6);
    }
  }
}

TEST(InferenceUnary, StridedLargeAndHalfInputs) {
  Generator g(8);
  for (const UnaryRow& row : unary_rows()) {
    SCOPED_TRACE(row.name);
    // A transposed view: values must follow the logical (row-major) order.
    Tensor x = uniform({6, 4}, row.lo, row.hi, g, DType::f64);
    Tensor xt = ops::transpose(x, 0, 1);
    std::vector<double> want;
    for (double v : vals(xt)) want.push_back(row.ref(v));
    expect_near(row.op(xt), want, 1e-12);
    // Larger than one parallel chunk.
    Tensor big = uniform({70001}, row.lo, row.hi, g, DType::f32);
    Tensor yb = row.op(big);
    std::vector<double> bv = vals(big), yv = vals(yb);
    for (size_t i = 0; i < bv.size(); i += 997) EXPECT_NEAR(yv[i], row.ref(bv[i]), 2e-6 * std::max(1.0, std::abs(yv[i])));
    // f16 computes in f32 and comes back as f16.
    Tensor h = to_dtype_raw(x, DType::f16);
    Tensor yh = row.op(h);
    EXPECT_EQ(yh.dtype(), DType::f16);
    std::vector<double> hv = vals(h), yhv = vals(yh);
    for (size_t i = 0; i < hv.size(); ++i) EXPECT_NEAR(yhv[i], row.ref(hv[i]), 2e-3 * std::max(1.0, std::abs(yhv[i])));
    // Integers are not float math.
    expect_error<TypeError>([&] { row.op(Tensor::zeros({2}, DType::i64)); }, row.name);
  }
}

TEST(InferenceUnary, OnnxDocumentedExamples) {
  Tensor x = f32({-1, 0, 1});
  expect_near(ops::leaky_relu(x, 0.1), {-0.1, 0, 1}, 1e-7);
  expect_near(ops::hard_sigmoid(x, 0.5, 0.6), {0.1, 0.6, 1.0}, 1e-7);
  expect_near(ops::elu(x, 2.0), {-1.2642411, 0, 1}, 1e-6);
  expect_near(ops::selu(x, 2.0, 3.0), {-3.79272318, 0, 3}, 1e-6);
  expect_near(ops::softsign(x), {-0.5, 0, 0.5}, 1e-7);
  expect_near(ops::softplus(x), {0.31326166, 0.69314718, 1.31326163}, 1e-6);
  expect_near(ops::reciprocal(f32({-4, 2})), {-0.25, 0.5}, 0);
  expect_near(ops::erf(f32({0.5f, 1, -2})), {0.5204998778, 0.8427007929, -0.9953222650}, 1e-6);
  expect_near(ops::hard_swish(f32({-4, -3, 0, 1, 3, 4})), {0, 0, 0, 2.0 / 3, 3, 4}, 1e-6);
  expect_near(ops::floor(f32({-1.5f, 1.2f, 2})), {-2, 1, 2}, 0);
  expect_near(ops::ceil(f32({-1.5f, 1.2f, 2})), {-1, 2, 2}, 0);
  // Round: halves go to the even neighbour.
  Tensor r = f32({0.1f, 0.5f, 0.9f, 1.2f, 1.5f, 1.8f, 2.3f, 2.5f, 2.7f, -1.1f, -1.5f, -1.9f, -2.2f, -2.5f, -2.8f});
  expect_near(ops::round(r), {0, 0, 1, 1, 2, 2, 2, 2, 3, -1, -2, -2, -2, -2, -3}, 0);
  // Large inputs do not overflow softplus; NaN passes through the clamps.
  expect_near(ops::softplus(f32({100, -100})), {100, 3.720076e-44}, 1e-6);
  double nan = std::numeric_limits<double>::quiet_NaN();
  expect_near(ops::hard_sigmoid(Tensor::from_vector<double>({nan})), {nan}, 0);
}

TEST(InferenceUnary, RoundingAtTheEdgesOfPrecision) {
  // Halves just below 2^23 (f32) and 2^52 (f64), where the add-and-subtract rounding trick must
  // switch to "already an integer"; signed zeros, infinities and NaN pass through as in libm.
  double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const double big = std::ldexp(1.0, 100);  // exact in f32 and f64
  struct Row { DType dt; double half; };
  for (Row row : {Row{DType::f32, 8388607.5}, Row{DType::f64, 4503599627370495.5}}) {
    SCOPED_TRACE(dtype_name(row.dt));
    Tensor x = to_dtype_raw(Tensor::from_vector<double>({row.half, -row.half, big, -inf, nan, -0.0, -0.3, 0.3}), row.dt);
    double h = row.half;
    expect_near(ops::round(x), {h + 0.5, -h - 0.5, big, -inf, nan, 0, 0, 0}, 0);
    expect_near(ops::floor(x), {h - 0.5, -h - 0.5, big, -inf, nan, 0, -1, 0}, 0);
    expect_near(ops::ceil(x), {h + 0.5, -h + 0.5, big, -inf, nan, 0, 0, 1}, 0);
    std::vector<double> r = vals(ops::round(x)), f = vals(ops::floor(x)), c = vals(ops::ceil(x));
    EXPECT_TRUE(std::signbit(r[5]) && std::signbit(r[6]) && !std::signbit(r[7]));  // -0, -0, +0
    EXPECT_TRUE(std::signbit(f[5]));
    EXPECT_TRUE(std::signbit(c[5]) && std::signbit(c[6]));
  }
}

TEST(InferenceUnary, ResultsCarryNoAutogradHistory) {
  Tensor x = Tensor::from_vector<double>({-1, 2});
  x.set_requires_grad(true);
  Tensor y = ops::leaky_relu(x);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.grad_fn(), nullptr);
}

// ---------------------------------------------------------------- sign

TEST(InferenceSign, EveryNumericDtype) {
  for (DType dt : {DType::f32, DType::f64, DType::i32, DType::i64, DType::i8}) {
    Tensor x = to_dtype_raw(Tensor::from_vector<double>({-5, -1, 0, 1, 3, 5}), dt);
    Tensor y = ops::sign(x);
    EXPECT_EQ(y.dtype(), dt);
    expect_near(y, {-1, -1, 0, 1, 1, 1}, 0);
  }
  Tensor u = Tensor::from_vector<uint8_t>({0, 1, 200});
  EXPECT_EQ(ops::sign(u).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 1}));
  double nan = std::numeric_limits<double>::quiet_NaN();
  expect_near(ops::sign(Tensor::from_vector<double>({nan, -0.0, -2.5})), {nan, 0, -1}, 0);
  expect_error<TypeError>([] { ops::sign(Tensor::zeros({1}, DType::b8)); }, "sign");
}

// ---------------------------------------------------------------- logical

TEST(InferenceLogical, TruthTablesWithBroadcasting) {
  Tensor a = Tensor::from_vector<bool>({false, true}, {2, 1});
  Tensor b = Tensor::from_vector<bool>({false, true, true}, {3});
  struct Row { std::function<Tensor(const Tensor&, const Tensor&)> op; std::function<bool(bool, bool)> ref; };
  for (const Row& row : {Row{ops::logical_and, [](bool x, bool y) { return x && y; }},
                         Row{ops::logical_or, [](bool x, bool y) { return x || y; }},
                         Row{ops::logical_xor, [](bool x, bool y) { return x != y; }}}) {
    Tensor c = row.op(a, b);
    EXPECT_EQ(c.dtype(), DType::b8);
    ASSERT_EQ(c.shape(), (Shape{2, 3}));
    std::vector<double> got = vals(c);
    bool av[2] = {false, true}, bv[3] = {false, true, true};
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) EXPECT_EQ(got[i * 3 + j] != 0, row.ref(av[i], bv[j])) << i << "," << j;
  }
  expect_error<ValueError>([&] { ops::logical_and(b, Tensor::zeros({4}, DType::b8)); }, "logical_and");
}

// ---------------------------------------------------------------- mod

TEST(InferenceMod, OnnxExamples) {
  Tensor x = Tensor::from_vector<int64_t>({-4, 7, 5, 4, -7, 8});
  Tensor y = Tensor::from_vector<int64_t>({2, -3, 8, -2, 3, 5});
  EXPECT_EQ(ops::mod(x, y).to_vector<int64_t>(), (std::vector<int64_t>{0, -2, 5, 0, 2, 3}));
  EXPECT_EQ(ops::mod(x, y, true).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 5, 0, -1, 3}));
  Tensor xf = f32({-4.3f, 7.2f, 5.0f, 4.3f, -7.2f, 8.0f}), yf = f32({2.1f, -3.4f, 8.0f, -2.1f, 3.4f, 5.0f});
  expect_near(ops::mod(xf, yf, true), {-0.1, 0.4, 5.0, 0.1, -0.4, 3.0}, 1e-5);
  Tensor u = Tensor::from_vector<uint8_t>({4, 7, 5}), v = Tensor::from_vector<uint8_t>({2, 3, 8});
  EXPECT_EQ(ops::mod(u, v).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 5}));
  EXPECT_EQ(ops::mod(u, v).dtype(), DType::u8);
}

TEST(InferenceMod, IntegerReferenceWithBroadcasting) {
  Generator g(3);
  for (DType dt : {DType::i32, DType::i64, DType::i8}) {
    Tensor a = to_dtype_raw(ops::sub(ops::floor(uniform({3, 1, 5}, 0, 41, g, DType::f64)), 20.0), dt);
    std::vector<double> bd = {-7, -3, -1, 2, 5, 9};
    Tensor b = to_dtype_raw(Tensor::from_vector<double>(bd, {1, 6, 1}), dt);
    for (bool fm : {false, true}) {
      Tensor c = ops::mod(a, b, fm);
      EXPECT_EQ(c.dtype(), dt);
      ASSERT_EQ(c.shape(), (Shape{3, 6, 5}));
      std::vector<double> av = vals(a), cv = vals(c);
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 6; ++j)
          for (int k = 0; k < 5; ++k) {
            double x = av[i * 5 + k], y = bd[j];
            double want = fm ? x - std::trunc(x / y) * y : x - std::floor(x / y) * y;
            EXPECT_EQ(cv[(i * 6 + j) * 5 + k], want) << x << " mod " << y << " fmod=" << fm;
          }
    }
  }
}

TEST(InferenceMod, EdgeCasesAndErrors) {
  int64_t lowest = std::numeric_limits<int64_t>::min();
  Tensor m = Tensor::from_vector<int64_t>({lowest}), neg1 = Tensor::from_vector<int64_t>({-1});
  EXPECT_EQ(ops::mod(m, neg1).to_vector<int64_t>(), (std::vector<int64_t>{0}));
  EXPECT_EQ(ops::mod(m, neg1, true).to_vector<int64_t>(), (std::vector<int64_t>{0}));
  expect_error<TypeError>([] { ops::mod(f32({1}), f32({2})); }, "fmod=1");
  expect_error<ValueError>([] { ops::mod(Tensor::from_vector<int32_t>({1, 2}), Tensor::from_vector<int32_t>({3, 0})); },
                           "division by zero");
  expect_error<TypeError>([] { ops::mod(Tensor::zeros({1}, DType::b8), Tensor::zeros({1}, DType::b8)); }, "bool");
  // Float fmod follows C: the sign of the dividend, NaN for a zero divisor.
  double nan = std::numeric_limits<double>::quiet_NaN();
  expect_near(ops::mod(Tensor::from_vector<double>({-3, 3, 1}), Tensor::from_vector<double>({2, -2, 0}), true),
              {-1, 1, nan}, 0);
}

// ---------------------------------------------------------------- prelu

TEST(InferencePrelu, UnidirectionalBroadcastAgainstLoop) {
  Generator g(4);
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = uniform({2, 3, 2, 2}, -1, 1, g, dt);
    Tensor slope = uniform({3, 1, 1}, 0, 1, g, dt);
    Tensor y = ops::prelu(x, slope);
    EXPECT_EQ(y.dtype(), dt);
    ASSERT_EQ(y.shape(), x.shape());
    std::vector<double> xv = vals(x), sv = vals(slope), want;
    for (int64_t i = 0; i < 24; ++i) {
      int64_t c = (i / 4) % 3;
      want.push_back(xv[i] < 0 ? sv[c] * xv[i] : xv[i]);
    }
    expect_near(y, want, dt == DType::f64 ? 0 : 1e-7);
  }
  // ONNX's prelu_broadcast example: slope (5) against x (3, 4, 5).
  Tensor x = uniform({3, 4, 5}, -1, 1, g, DType::f64), slope = uniform({5}, 0, 1, g, DType::f64);
  std::vector<double> xv = vals(x), sv = vals(slope), want;
  for (int64_t i = 0; i < 60; ++i) want.push_back(xv[i] < 0 ? sv[i % 5] * xv[i] : xv[i]);
  expect_near(ops::prelu(x, slope), want, 0);
  // Integer prelu.
  EXPECT_EQ(ops::prelu(Tensor::from_vector<int32_t>({-4, 5}), Tensor::from_vector<int32_t>({3})).to_vector<int64_t>(),
            (std::vector<int64_t>{-12, 5}));
}

TEST(InferencePrelu, SlopeMustBroadcastToInput) {
  expect_error<ValueError>([] { ops::prelu(Tensor::zeros({2, 3, 4}), Tensor::zeros({3})); }, "does not broadcast");
  // The slope may not grow the input (bidirectional broadcasting is not allowed).
  expect_error<ValueError>([] { ops::prelu(Tensor::zeros({3}), Tensor::zeros({2, 3})); }, "does not broadcast");
}

// ---------------------------------------------------------------- tile

TEST(InferenceTile, OnnxExampleAndLoopReference) {
  Tensor x = f32({0, 1, 2, 3}, {2, 2});
  Tensor y = ops::tile(x, {2, 2});
  ASSERT_EQ(y.shape(), (Shape{4, 4}));
  expect_near(y, {0, 1, 0, 1, 2, 3, 2, 3, 0, 1, 0, 1, 2, 3, 2, 3}, 0);

  Tensor a = Tensor::arange(24, DType::i64);
  Tensor a3 = ops::reshape(a, {2, 3, 4});
  Tensor t = ops::tile(a3, {1, 2, 3});
  EXPECT_EQ(t.dtype(), DType::i64);
  ASSERT_EQ(t.shape(), (Shape{2, 6, 12}));
  std::vector<int64_t> tv = t.to_vector<int64_t>();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 6; ++j)
      for (int64_t k = 0; k < 12; ++k) EXPECT_EQ(tv[(i * 6 + j) * 12 + k], (i * 3 + j % 3) * 4 + k % 4);

  // A transposed (strided) input.
  Tensor s = ops::transpose(f32({1, 2, 3, 4, 5, 6}, {2, 3}), 0, 1);  // [[1,4],[2,5],[3,6]]
  expect_near(ops::tile(s, {1, 2}), {1, 4, 1, 4, 2, 5, 2, 5, 3, 6, 3, 6}, 0);
  EXPECT_EQ(ops::tile(x, {0, 3}).shape(), (Shape{0, 6}));
  EXPECT_EQ(ops::tile(Tensor::scalar(5.0), {}).item(), 5.0);
}

TEST(InferenceTile, BadRepeats) {
  expect_error<ValueError>([] { ops::tile(Tensor::zeros({2, 2}), {2}); }, "one repeat per dim");
  expect_error<ValueError>([] { ops::tile(Tensor::zeros({2}), {-1}); }, "non-negative");
}

// ---------------------------------------------------------------- range

TEST(InferenceRange, OnnxExamplesAndDtypes) {
  Tensor r = ops::range(Tensor::scalar(1), Tensor::scalar(5), Tensor::scalar(2));
  EXPECT_EQ(r.dtype(), DType::f32);
  expect_near(r, {1, 3}, 0);
  auto i32 = [](double v) { return Tensor::scalar(v, DType::i32); };
  Tensor ri = ops::range(i32(10), i32(6), i32(-3));
  EXPECT_EQ(ri.dtype(), DType::i32);
  EXPECT_EQ(ri.to_vector<int64_t>(), (std::vector<int64_t>{10, 7}));
  auto i64 = [](double v) { return Tensor::scalar(v, DType::i64); };
  EXPECT_EQ(ops::range(i64(0), i64(10), i64(3)).to_vector<int64_t>(), (std::vector<int64_t>{0, 3, 6, 9}));
  EXPECT_EQ(ops::range(i64(-2), i64(2), i64(1)).to_vector<int64_t>(), (std::vector<int64_t>{-2, -1, 0, 1}));
  EXPECT_EQ(ops::range(i64(5), i64(5), i64(1)).numel(), 0);
  EXPECT_EQ(ops::range(i64(5), i64(0), i64(1)).numel(), 0);  // wrong direction: empty, not negative
  auto f64 = [](double v) { return Tensor::scalar(v, DType::f64); };
  Tensor rf = ops::range(f64(0), f64(1), f64(0.3));
  expect_near(rf, {0, 0.3, 0.6, 0.9}, 1e-15);
  expect_near(ops::range(f64(1), f64(-1), f64(-0.5)), {1, 0.5, 0, -0.5}, 0);
  // One-element 1-d inputs are accepted as scalars.
  EXPECT_EQ(ops::range(Tensor::from_vector<int64_t>({2}), i64(4), i64(1)).to_vector<int64_t>(),
            (std::vector<int64_t>{2, 3}));
}

TEST(InferenceRange, BadInputs) {
  auto i64 = [](double v) { return Tensor::scalar(v, DType::i64); };
  expect_error<ValueError>([&] { ops::range(i64(0), i64(3), i64(0)); }, "delta must not be zero");
  expect_error<TypeError>([&] { ops::range(i64(0), Tensor::scalar(3), i64(1)); }, "one dtype");
  expect_error<ValueError>([&] { ops::range(Tensor::zeros({2}, DType::i64), i64(3), i64(1)); }, "start");
}

// ---------------------------------------------------------------- cumsum

TEST(InferenceCumsum, OnnxExamples) {
  Tensor x = Tensor::from_vector<double>({1, 2, 3, 4, 5});
  expect_near(ops::cumsum(x, 0), {1, 3, 6, 10, 15}, 0);
  expect_near(ops::cumsum(x, 0, true), {0, 1, 3, 6, 10}, 0);
  expect_near(ops::cumsum(x, 0, false, true), {15, 14, 12, 9, 5}, 0);
  expect_near(ops::cumsum(x, 0, true, true), {14, 12, 9, 5, 0}, 0);
  Tensor m = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  expect_near(ops::cumsum(m, 0), {1, 2, 3, 5, 7, 9}, 0);
  expect_near(ops::cumsum(m, 1), {1, 3, 6, 4, 9, 15}, 0);
  expect_near(ops::cumsum(m, -1), {1, 3, 6, 4, 9, 15}, 0);
}

// Plain loop: out[.., k, ..] = sum of x[.., j, ..] over j before/after k (inclusive or not).
std::vector<double> cumsum_ref(const std::vector<double>& x, const Shape& s, int64_t axis, bool excl, bool rev) {
  int64_t outer = 1, inner = 1, n = s[axis];
  for (int64_t d = 0; d < axis; ++d) outer *= s[d];
  for (int64_t d = axis + 1; d < static_cast<int64_t>(s.size()); ++d) inner *= s[d];
  std::vector<double> y(x.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < inner; ++c)
      for (int64_t k = 0; k < n; ++k) {
        double acc = 0;
        for (int64_t j = 0; j < n; ++j) {
          bool take = rev ? (excl ? j > k : j >= k) : (excl ? j < k : j <= k);
          if (take) acc += x[(o * n + j) * inner + c];
        }
        y[(o * n + k) * inner + c] = acc;
      }
  return y;
}

TEST(InferenceCumsum, EveryAxisAndFlagAgainstLoop) {
  Generator g(5);
  Shape s{3, 4, 5};
  for (DType dt : {DType::f64, DType::f32, DType::i32, DType::i64}) {
    Tensor x = to_dtype_raw(ops::floor(uniform(s, -9, 9, g, DType::f64)), dt);
    for (int64_t axis = 0; axis < 3; ++axis)
      for (bool excl : {false, true})
        for (bool rev : {false, true}) {
          Tensor y = ops::cumsum(x, axis, excl, rev);
          EXPECT_EQ(y.dtype(), dt);
          expect_near(y, cumsum_ref(vals(x), s, axis, excl, rev), 0);
        }
  }
  // Strided input, and shapes large enough to split across threads both ways.
  Tensor xt = ops::transpose(uniform({4, 3}, -1, 1, g, DType::f64), 0, 1);
  expect_near(ops::cumsum(xt, 1), cumsum_ref(vals(xt), {3, 4}, 1, false, false), 1e-14);
  for (Shape big : {Shape{64, 40, 30}, Shape{2, 5, 3000}}) {
    Tensor xb = ops::floor(uniform(big, -9, 9, g, DType::f32));
    expect_near(ops::cumsum(xb, 1, false, true), cumsum_ref(vals(xb), big, 1, false, true), 0);
  }
  EXPECT_EQ(ops::cumsum(Tensor::zeros({0, 3}), 1).shape(), (Shape{0, 3}));
}

TEST(InferenceCumsum, BadAxis) {
  expect_error<IndexError>([] { ops::cumsum(Tensor::zeros({2, 3}), 2); }, "cumsum");
  expect_error<ValueError>([] { ops::cumsum(Tensor::scalar(1.0), 0); }, "at least one dimension");
}

// ---------------------------------------------------------------- shape_of, constant_of_shape

TEST(InferenceShapeOf, StartAndEndAsOnnxShape15) {
  Tensor x = Tensor::zeros({2, 3, 4, 5});
  auto dims = [&](int64_t s, std::optional<int64_t> e) {
    Tensor r = ops::shape_of(x, s, e);
    EXPECT_EQ(r.dtype(), DType::i64);
    EXPECT_EQ(r.dim(), 1);
    return r.to_vector<int64_t>();
  };
  EXPECT_EQ(dims(0, std::nullopt), (std::vector<int64_t>{2, 3, 4, 5}));
  EXPECT_EQ(dims(1, std::nullopt), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(dims(0, -1), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(dims(-3, -1), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(dims(-10, 10), (std::vector<int64_t>{2, 3, 4, 5}));  // clamped
  EXPECT_EQ(dims(3, 1), (std::vector<int64_t>{}));
  EXPECT_EQ(ops::shape_of(Tensor::scalar(1.0)).shape(), (Shape{0}));
}

TEST(InferenceConstantOfShape, ValuesDtypesAndErrors) {
  Tensor z = ops::constant_of_shape(Tensor::from_vector<int64_t>({2, 3}));
  EXPECT_EQ(z.dtype(), DType::f32);
  expect_near(z, std::vector<double>(6, 0.0), 0);
  int64_t big = (int64_t{1} << 53) + 1;  // not representable in double: must be copied exactly
  Tensor c = ops::constant_of_shape(Tensor::from_vector<int64_t>({3}), Tensor::from_vector<int64_t>({big}));
  EXPECT_EQ(c.dtype(), DType::i64);
  ASSERT_EQ(c.numel(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(c.data<int64_t>()[i], big);  // read raw: to_vector goes through double
  Tensor f = ops::constant_of_shape(Tensor::from_vector<int32_t>({1, 2}), Tensor::from_vector<double>({0.5}));
  EXPECT_EQ(f.dtype(), DType::f64);
  EXPECT_EQ(f.shape(), (Shape{1, 2}));
  expect_near(f, {0.5, 0.5}, 0);
  Tensor s = ops::constant_of_shape(Tensor::zeros({0}, DType::i64), Tensor::from_vector<float>({7}));
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item(), 7.0);
  EXPECT_EQ(ops::constant_of_shape(Tensor::from_vector<int64_t>({4, 0})).numel(), 0);
  expect_error<ValueError>([] { ops::constant_of_shape(Tensor::from_vector<int64_t>({2, -1})); }, "non-negative");
  expect_error<ValueError>(
      [] { ops::constant_of_shape(Tensor::from_vector<int64_t>({2}), Tensor::from_vector<float>({1, 2})); },
      "exactly one element");
  expect_error<TypeError>([] { ops::constant_of_shape(Tensor::from_vector<float>({2})); }, "integer");
  expect_error<ValueError>([] { ops::constant_of_shape(Tensor::zeros({1, 2}, DType::i64)); }, "1-d");
}

}  // namespace
