// Tests for the forward-only ops of ops/inference_extra.h: each op against ONNX's documented
// examples, hand-computed values or a naive loop / closed-form reference in double, in the
// dtypes it takes, on strided inputs, and bad inputs rejected naming the op.
#include "kiln/ops/inference_extra.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <optional>

#include "kiln/core/rng.h"
#include "kiln/ops/ops.h"

using namespace kiln;

namespace {

const double kNan = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

void expect_near(const Tensor& got, const std::vector<double>& want, double tol) {
  std::vector<double> g = vals(got);
  ASSERT_EQ(g.size(), want.size());
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(g[i])) << "at " << i << ": " << g[i];
      continue;
    }
    if (std::isinf(want[i])) {
      EXPECT_EQ(g[i], want[i]) << "at " << i;
      continue;
    }
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
Tensor f64(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector<double>(v, s); }
Tensor i64(const std::vector<int64_t>& v, const Shape& s) { return Tensor::from_vector<int64_t>(v, s); }
Tensor i64(const std::vector<int64_t>& v) { return Tensor::from_vector<int64_t>(v); }

// Row-major flat index of `idx` in `shape`.
int64_t flat(const Shape& shape, const std::vector<int64_t>& idx) {
  int64_t f = 0;
  for (size_t d = 0; d < shape.size(); ++d) f = f * shape[d] + idx[d];
  return f;
}

// Calls f(index) for every multi-index of shape, in row-major order.
void for_each_index(const Shape& shape, const std::function<void(const std::vector<int64_t>&)>& f) {
  std::vector<int64_t> idx(shape.size(), 0);
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  for (int64_t i = 0; i < n; ++i) {
    f(idx);
    for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
      if (++idx[static_cast<size_t>(d)] < shape[static_cast<size_t>(d)]) break;
      idx[static_cast<size_t>(d)] = 0;
    }
  }
}

// ---------------------------------------------------------------- unary float math

struct UnaryRow {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;  // an independent formula, in double
  double lo, hi;
};

std::vector<UnaryRow> unary_rows() {
  return {
      {"tan", [](const Tensor& x) { return ops::tan(x); }, [](double v) { return std::sin(v) / std::cos(v); }, -1.4,
       1.4},
      {"sinh", [](const Tensor& x) { return ops::sinh(x); }, [](double v) { return (std::exp(v) - std::exp(-v)) / 2; },
       -5, 5},
      {"cosh", [](const Tensor& x) { return ops::cosh(x); }, [](double v) { return (std::exp(v) + std::exp(-v)) / 2; },
       -5, 5},
      {"asin", [](const Tensor& x) { return ops::asin(x); },
       [](double v) { return std::atan2(v, std::sqrt(1 - v * v)); }, -0.99, 0.99},
      {"acos", [](const Tensor& x) { return ops::acos(x); },
       [](double v) { return std::atan2(std::sqrt(1 - v * v), v); }, -0.99, 0.99},
      {"atan", [](const Tensor& x) { return ops::atan(x); }, [](double v) { return std::atan2(v, 1.0); }, -8, 8},
      {"asinh", [](const Tensor& x) { return ops::asinh(x); },
       [](double v) {  // log(v + sqrt(v^2 + 1)), written for v >= 0 and made odd to avoid cancellation
         double a = std::abs(v);
         return std::copysign(std::log(a + std::sqrt(a * a + 1)), v);
       },
       -6, 6},
      {"acosh", [](const Tensor& x) { return ops::acosh(x); },
       [](double v) { return std::log(v + std::sqrt(v * v - 1)); }, 1.01, 9},
      {"atanh", [](const Tensor& x) { return ops::atanh(x); },
       [](double v) { return 0.5 * std::log((1 + v) / (1 - v)); }, -0.95, 0.95},
      {"celu", [](const Tensor& x) { return ops::celu(x, 2.0); },
       [](double v) { return std::max(0.0, v) + std::min(0.0, 2.0 * (std::exp(v / 2.0) - 1)); }, -5, 5},
      {"thresholded_relu", [](const Tensor& x) { return ops::thresholded_relu(x, 0.7); },
       [](double v) { return v > 0.7 ? v : 0.0; }, -3, 3},
  };
}

TEST(InferenceExtraUnary, MatchReferenceInF32AndF64) {
  Generator g(11);
  for (const UnaryRow& row : unary_rows()) {
    SCOPED_TRACE(row.name);
    for (DType dt : {DType::f32, DType::f64}) {
      Tensor x = uniform({5, 7}, row.lo, row.hi, g, dt);
      Tensor y = row.op(x);
      EXPECT_EQ(y.dtype(), dt);
      EXPECT_EQ(y.shape(), x.shape());
      std::vector<double> want;
      for (double v : vals(x)) want.push_back(row.ref(v));
      expect_near(y, want, dt == DType::f64 ? 1e-12 : 3e-6);
    }
  }
}

TEST(InferenceExtraUnary, StridedLargeAndHalfInputs) {
  Generator g(12);
  for (const UnaryRow& row : unary_rows()) {
    SCOPED_TRACE(row.name);
    Tensor x = uniform({6, 4}, row.lo, row.hi, g, DType::f64);
    Tensor xt = ops::transpose(x, 0, 1);  // values must follow the logical order
    std::vector<double> want;
    for (double v : vals(xt)) want.push_back(row.ref(v));
    expect_near(row.op(xt), want, 1e-12);
    Tensor big = uniform({70001}, row.lo, row.hi, g, DType::f32);  // several parallel chunks
    std::vector<double> bv = vals(big), yv = vals(row.op(big));
    for (size_t i = 0; i < bv.size(); i += 997)
      EXPECT_NEAR(yv[i], row.ref(bv[i]), 3e-6 * std::max(1.0, std::abs(yv[i])));
    Tensor h = to_dtype_raw(x, DType::f16);
    Tensor yh = row.op(h);
    EXPECT_EQ(yh.dtype(), DType::f16);
    std::vector<double> hv = vals(h), yhv = vals(yh);
    for (size_t i = 0; i < hv.size(); ++i) EXPECT_NEAR(yhv[i], row.ref(hv[i]), 2e-3 * std::max(1.0, std::abs(yhv[i])));
    expect_error<TypeError>([&] { row.op(Tensor::zeros({2}, DType::i64)); }, row.name);
  }
}

TEST(InferenceExtraUnary, OnnxExamplesAndDomainEdges) {
  expect_near(ops::tan(f32({-1, 0, 1})), {-1.5574077, 0, 1.5574077}, 1e-6);
  expect_near(ops::sinh(f32({-1, 0, 1})), {-1.17520119, 0, 1.17520119}, 1e-6);
  expect_near(ops::cosh(f32({-1, 0, 1})), {1.54308063, 1, 1.54308063}, 1e-6);
  expect_near(ops::asin(f32({-0.5f, 0, 0.5f})), {-0.52359878, 0, 0.52359878}, 1e-6);
  expect_near(ops::acos(f32({-0.5f, 0, 0.5f})), {2.0943951, 1.57079633, 1.04719755}, 1e-6);
  expect_near(ops::atan(f32({-1, 0, 1})), {-0.78539816, 0, 0.78539816}, 1e-6);
  expect_near(ops::asinh(f32({-1, 0, 1})), {-0.88137359, 0, 0.88137359}, 1e-6);
  expect_near(ops::acosh(f32({10, 2.7182817f, 1})), {2.99322285, 1.65745445, 0}, 1e-6);
  expect_near(ops::atanh(f32({-0.5f, 0, 0.5f})), {-0.54930614, 0, 0.54930614}, 1e-6);
  // Outside the domain: NaN, and the poles are infinite.
  expect_near(ops::asin(Tensor::from_vector<double>({2, -1.5})), {kNan, kNan}, 0);
  expect_near(ops::acos(Tensor::from_vector<double>({1.01})), {kNan}, 0);
  expect_near(ops::acosh(Tensor::from_vector<double>({0.5})), {kNan}, 0);
  expect_near(ops::atanh(Tensor::from_vector<double>({1, -1, 2})), {kInf, -kInf, kNan}, 0);
  // Celu with ONNX's default alpha = 1 is elu; at alpha 2 the negative side is 2 (e^(x/2) - 1).
  expect_near(ops::celu(f32({-1, 0, 1})), {std::expm1(-1.0), 0, 1}, 1e-6);
  expect_near(ops::celu(f32({-2, 3}), 2.0), {2 * std::expm1(-1.0), 3}, 1e-6);
  expect_error<ValueError>([] { ops::celu(f32({1}), 0.0); }, "celu");
  // ThresholdedRelu: strictly greater than alpha.
  expect_near(ops::thresholded_relu(f32({-1.5f, 0, 1, 2, 2.2f}), 2.0), {0, 0, 0, 0, 2.2}, 1e-7);
}

TEST(InferenceExtraUnary, ResultsCarryNoAutogradHistory) {
  Tensor x = Tensor::from_vector<double>({0.1, 0.2});
  x.set_requires_grad(true);
  Tensor y = ops::sinh(x);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.grad_fn(), nullptr);
}

// ---------------------------------------------------------------- shrink

TEST(InferenceExtraShrink, HardSoftAndIntegerInputs) {
  Tensor x = f32({-2, -1, 0, 1, 2});
  expect_near(ops::shrink(x, 1.5), {-2, 0, 0, 0, 2}, 0);                  // ONNX's hard shrink example
  expect_near(ops::shrink(x, 1.5, 1.5), {-0.5, 0, 0, 0, 0.5}, 1e-7);      // soft shrink
  expect_near(ops::shrink(f32({-0.5f, 0.5f, 0.6f})), {0, 0, 0.6}, 1e-7);  // defaults: lambd 0.5, bias 0
  Tensor xi = Tensor::from_vector<int32_t>({-5, -2, 0, 2, 5});
  Tensor yi = ops::shrink(xi, 2.0, 1.0);
  EXPECT_EQ(yi.dtype(), DType::i32);
  EXPECT_EQ(yi.to_vector<int64_t>(), (std::vector<int64_t>{-4, 0, 0, 0, 4}));
  Tensor xd = f64({-3, -1, 4, 0.2}, {2, 2});
  expect_near(ops::shrink(ops::transpose(xd, 0, 1), 1.0, 0.5), {-2.5, 3.5, 0, 0}, 1e-12);
  expect_error<TypeError>([] { ops::shrink(Tensor::zeros({1}, DType::b8)); }, "shrink");
}

// ---------------------------------------------------------------- is_inf, is_nan

TEST(InferenceExtraClassify, IsInfAndIsNan) {
  for (DType dt : {DType::f32, DType::f64, DType::f16}) {
    Tensor x = to_dtype_raw(Tensor::from_vector<double>({-1.2, kNan, kInf, 2.8, -kInf, kInf}), dt);
    Tensor both = ops::is_inf(x);
    EXPECT_EQ(both.dtype(), DType::b8);
    EXPECT_EQ(both.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 0, 1, 1}));
    EXPECT_EQ(ops::is_inf(x, true, false).to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 0, 0, 1}));
    EXPECT_EQ(ops::is_inf(x, false, true).to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0, 0, 1, 0}));
    EXPECT_EQ(ops::is_inf(x, false, false).to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0, 0, 0, 0}));
    Tensor nan = ops::is_nan(x);
    EXPECT_EQ(nan.dtype(), DType::b8);
    EXPECT_EQ(nan.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 0, 0, 0, 0}));
  }
  // Strided input; integers are never inf or NaN.
  Tensor m = f64({kNan, 1, 2, kInf}, {2, 2});
  EXPECT_EQ(ops::is_nan(ops::transpose(m, 0, 1)).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 0, 0}));
  EXPECT_EQ(ops::is_inf(ops::transpose(m, 0, 1)).to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0, 1}));
  EXPECT_EQ(ops::is_nan(i64({1, 2})).to_vector<int64_t>(), (std::vector<int64_t>{0, 0}));
}

// ---------------------------------------------------------------- trilu

TEST(InferenceExtraTrilu, MatchesNaiveMaskForEveryDiagonal) {
  Generator g(3);
  Shape s{2, 4, 5};
  Tensor x = to_dtype_raw(uniform(s, -9, 9, g, DType::f32), DType::i64);
  std::vector<double> xv = vals(x);
  for (bool upper : {true, false}) {
    for (int64_t k = -6; k <= 6; ++k) {
      SCOPED_TRACE(::testing::Message() << "upper " << upper << " k " << k);
      Tensor y = ops::trilu(x, k, upper);
      EXPECT_EQ(y.dtype(), DType::i64);
      std::vector<double> want(xv.size());
      for_each_index(s, [&](const std::vector<int64_t>& i) {
        int64_t f = flat(s, i), diff = i[2] - i[1];
        want[static_cast<size_t>(f)] = (upper ? diff >= k : diff <= k) ? xv[static_cast<size_t>(f)] : 0;
      });
      expect_near(y, want, 0);
    }
  }
}

TEST(InferenceExtraTrilu, OnnxExampleStridedBoolAndErrors) {
  // ONNX's triu example (k = 0) on a 4x5 input.
  Tensor x = i64({4, 7, 3, 7, 9, 1, 2, 8, 6, 9, 9, 4, 0, 8, 7, 4, 3, 4, 2, 4}, {4, 5});
  expect_near(ops::trilu(x), {4, 7, 3, 7, 9, 0, 2, 8, 6, 9, 0, 0, 0, 8, 7, 0, 0, 0, 2, 4}, 0);
  expect_near(ops::trilu(x, -1, false), {0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 9, 4, 0, 0, 0, 4, 3, 4, 0, 0}, 0);
  Tensor xt = ops::transpose(f64({1, 2, 3, 4, 5, 6}, {2, 3}), 0, 1);  // (3, 2) view: [[1,4],[2,5],[3,6]]
  expect_near(ops::trilu(xt, 0, false), {1, 0, 2, 5, 3, 6}, 0);
  Tensor b = Tensor::ones({3, 3}, DType::b8);
  EXPECT_EQ(ops::trilu(b, 1).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 1, 0, 0, 1, 0, 0, 0}));
  EXPECT_EQ(ops::trilu(Tensor::zeros({0, 3})).shape(), (Shape{0, 3}));
  expect_error<ValueError>([] { ops::trilu(f32({1, 2})); }, "trilu");
}

// ---------------------------------------------------------------- prod

TEST(InferenceExtraProd, MatchesNaiveProductOverAnyDims) {
  Generator g(5);
  Shape s{2, 3, 4};
  Tensor x = uniform(s, 0.5, 1.5, g, DType::f64);
  std::vector<double> xv = vals(x);
  for (const ops::Dims& dims : std::vector<ops::Dims>{{}, {0}, {1}, {-1}, {0, 2}, {2, 0, 1}}) {
    for (bool keep : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "dims " << dims.size() << " keep " << keep);
      std::vector<bool> red(3, dims.empty());
      for (int64_t d : dims) red[static_cast<size_t>(d < 0 ? d + 3 : d)] = true;
      Shape os, ks;  // output shape with and without the kept 1s
      for (size_t d = 0; d < 3; ++d) {
        if (!red[d]) os.push_back(s[d]);
        ks.push_back(red[d] ? 1 : s[d]);
      }
      std::vector<double> want(static_cast<size_t>(kiln::numel(ks)), 1.0);
      for_each_index(s, [&](const std::vector<int64_t>& i) {
        std::vector<int64_t> o = i;
        for (size_t d = 0; d < 3; ++d)
          if (red[d]) o[d] = 0;
        want[static_cast<size_t>(flat(ks, o))] *= xv[static_cast<size_t>(flat(s, i))];
      });
      Tensor y = ops::prod(x, dims, keep);
      EXPECT_EQ(y.shape(), keep ? ks : os);
      expect_near(y, want, 1e-12);
    }
  }
  // Strided input (a transposed view) and f32.
  Tensor xt = ops::transpose(to_dtype_raw(x, DType::f32), 0, 2);  // (4, 3, 2)
  std::vector<double> want;
  for (int64_t a = 0; a < 4; ++a) {
    double p = 1;
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t c = 0; c < 2; ++c) p *= xv[static_cast<size_t>(flat(s, {c, b, a}))];
    want.push_back(p);
  }
  expect_near(ops::prod(xt, {1, 2}), want, 1e-6);
}

TEST(InferenceExtraProd, OnnxExampleIntegersEmptyAndErrors) {
  // ONNX's ReduceProd example: (3, 2, 2) over axis 1, keepdims.
  Tensor x = f32({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {3, 2, 2});
  Tensor y = ops::prod(x, {1}, true);
  EXPECT_EQ(y.shape(), (Shape{3, 1, 2}));
  expect_near(y, {3, 8, 35, 48, 99, 120}, 0);
  expect_near(ops::prod(x), {479001600}, 0);
  Tensor xi = Tensor::from_vector<int32_t>({-2, 3, 4, -1}, {2, 2});
  Tensor yi = ops::prod(xi, {0});
  EXPECT_EQ(yi.dtype(), DType::i32);
  EXPECT_EQ(yi.to_vector<int64_t>(), (std::vector<int64_t>{-8, -3}));
  // An empty reduction is the empty product, 1.
  Tensor e = ops::prod(Tensor::zeros({2, 0}), {1});
  EXPECT_EQ(e.shape(), (Shape{2}));
  expect_near(e, {1, 1}, 0);
  expect_error<IndexError>([&] { ops::prod(x, {3}); }, "prod");
  expect_error<ValueError>([&] { ops::prod(x, {1, -2}); }, "repeated");
  expect_error<TypeError>([] { ops::prod(Tensor::ones({2}, DType::b8)); }, "prod");
}

// ---------------------------------------------------------------- hardmax

TEST(InferenceExtraHardmax, OnnxExamplesAndTies) {
  Tensor x = f32({3, 0, 1, 2, 2, 5, 1, 0, 0, 1, 3, 2, 0, 1, 2, 3}, {4, 4});
  expect_near(ops::hardmax(x), {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, 0);
  // Ties: the first maximum wins.
  Tensor t = f32({1, 1, 1, 1, 3, 3, 2, 3}, {2, 4});
  expect_near(ops::hardmax(t), {1, 0, 0, 0, 1, 0, 0, 0}, 0);
  expect_near(ops::hardmax(t, 0), {0, 0, 0, 0, 1, 1, 1, 1}, 0);
  expect_error<IndexError>([&] { ops::hardmax(t, 2); }, "hardmax");
  expect_error<TypeError>([] { ops::hardmax(i64({1, 2})); }, "hardmax");
  expect_error<ValueError>([] { ops::hardmax(Tensor::scalar(1.0)); }, "hardmax");
}

TEST(InferenceExtraHardmax, MatchesNaiveArgmaxOnEveryAxis) {
  Generator g(9);
  Shape s{3, 4, 5};
  Tensor x = uniform(s, -1, 1, g, DType::f64);
  std::vector<double> xv = vals(x);
  for (int64_t axis = 0; axis < 3; ++axis) {
    SCOPED_TRACE(axis);
    std::vector<double> want(xv.size(), 0.0);
    for_each_index(s, [&](const std::vector<int64_t>& i) {
      if (i[static_cast<size_t>(axis)] != 0) return;
      std::vector<int64_t> j = i, best = i;
      for (int64_t a = 0; a < s[static_cast<size_t>(axis)]; ++a) {
        j[static_cast<size_t>(axis)] = a;
        if (xv[static_cast<size_t>(flat(s, j))] > xv[static_cast<size_t>(flat(s, best))]) best = j;
      }
      want[static_cast<size_t>(flat(s, best))] = 1;
    });
    Tensor y = ops::hardmax(x, axis);
    EXPECT_EQ(y.dtype(), DType::f64);
    expect_near(y, want, 0);
    expect_near(ops::hardmax(to_dtype_raw(x, DType::f32), axis - 3), want, 0);
  }
  // coerce_2d (ONNX opset < 13): one maximum over dims [1, 3) per outer index.
  std::vector<double> want(xv.size(), 0.0);
  for (int64_t o = 0; o < 3; ++o) {
    int64_t best = o * 20;
    for (int64_t k = 1; k < 20; ++k)
      if (xv[static_cast<size_t>(o * 20 + k)] > xv[static_cast<size_t>(best)]) best = o * 20 + k;
    want[static_cast<size_t>(best)] = 1;
  }
  expect_near(ops::hardmax(x, 1, true), want, 0);
}

// ---------------------------------------------------------------- one_hot

TEST(InferenceExtraOneHot, AxesNegativeAndOutOfRangeIndices) {
  Tensor values = f32({2, 5});  // off 2, on 5
  // Last axis (default): indices (3), depth 4.
  Tensor y = ops::one_hot(i64({0, 3, 1}), 4, values);
  EXPECT_EQ(y.shape(), (Shape{3, 4}));
  EXPECT_EQ(y.dtype(), DType::f32);
  expect_near(y, {5, 2, 2, 2, 2, 2, 2, 5, 2, 5, 2, 2}, 0);
  // Negative indices count from depth; out-of-range gives a row of off values.
  expect_near(ops::one_hot(i64({-1, 4, -5}), 4, values), {2, 2, 2, 5, 2, 2, 2, 2, 2, 2, 2, 2}, 0);
  // Axis 0 on (2): depth rows, one column per index.
  Tensor y0 = ops::one_hot(i64({1, 2}), 3, values, 0);
  EXPECT_EQ(y0.shape(), (Shape{3, 2}));
  expect_near(y0, {2, 2, 5, 2, 2, 5}, 0);
  // Middle axis on (2, 2) float indices (truncated), values i32: out[i, d, j] = idx[i, j] == d.
  Tensor vi = Tensor::from_vector<int32_t>({0, 1});
  Tensor idx = f32({1, 9, 2, 4}, {2, 2});
  for (int64_t axis : {1, -2}) {
    Tensor ym = ops::one_hot(idx, 10, vi, axis);
    EXPECT_EQ(ym.shape(), (Shape{2, 10, 2}));
    EXPECT_EQ(ym.dtype(), DType::i32);
    std::vector<double> want(40, 0);
    std::vector<double> iv = vals(idx);
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 2; ++j)
        want[static_cast<size_t>((i * 10 + static_cast<int64_t>(iv[i * 2 + j])) * 2 + j)] = 1;
    expect_near(ym, want, 0);
  }
  expect_error<IndexError>([&] { ops::one_hot(i64({1}), 3, values, 2); }, "one_hot");
  expect_error<ValueError>([&] { ops::one_hot(i64({1}), 3, f32({1, 2, 3})); }, "values");
  expect_error<ValueError>([&] { ops::one_hot(i64({1}), -1, values); }, "depth");
}

// ---------------------------------------------------------------- eye_like, numel

TEST(InferenceExtraEyeLike, DiagonalsAndDtypes) {
  Tensor x = Tensor::zeros({3, 4}, DType::i32);
  Tensor y = ops::eye_like(x);
  EXPECT_EQ(y.dtype(), DType::i32);
  expect_near(y, {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0}, 0);
  Tensor up = ops::eye_like(x, 1, DType::f64);
  EXPECT_EQ(up.dtype(), DType::f64);
  expect_near(up, {0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, 0);
  expect_near(ops::eye_like(x, -2, DType::f32), {0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, 0);
  expect_near(ops::eye_like(x, 5), std::vector<double>(12, 0.0), 0);
  EXPECT_EQ(ops::eye_like(x, 0, DType::b8).to_vector<int64_t>()[5], 1);
  expect_error<ValueError>([] { ops::eye_like(f32({1, 2})); }, "eye_like");
}

TEST(InferenceExtraNumel, CountsAsI64Scalar) {
  Tensor n = ops::numel(Tensor::zeros({3, 4, 5}));
  EXPECT_EQ(n.dtype(), DType::i64);
  EXPECT_EQ(n.dim(), 0);
  EXPECT_EQ(n.to_vector<int64_t>(), (std::vector<int64_t>{60}));
  EXPECT_EQ(ops::numel(Tensor::scalar(2.0)).to_vector<int64_t>(), (std::vector<int64_t>{1}));
  EXPECT_EQ(ops::numel(Tensor::zeros({2, 0})).to_vector<int64_t>(), (std::vector<int64_t>{0}));
}

// ---------------------------------------------------------------- losses

// ONNX NegativeLogLikelihoodLoss by its definition, over (N, C, D) flattened spatial dims.
Tensor ref_nll(const std::vector<double>& x, const Shape& xs, const std::vector<int64_t>& t,
               const std::vector<double>& w, std::optional<int64_t> ii, ops::Reduction red) {
  int64_t n = xs[0], c = xs[1], d = 1;
  for (size_t k = 2; k < xs.size(); ++k) d *= xs[k];
  std::vector<double> per;
  double total = 0, wsum = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      int64_t cls = t[static_cast<size_t>(i * d + j)];
      if (ii && cls == *ii) {
        per.push_back(0);
        continue;
      }
      double wc = w.empty() ? 1 : w[static_cast<size_t>(cls)];
      per.push_back(-x[static_cast<size_t>((i * c + cls) * d + j)] * wc);
      total += per.back();
      wsum += wc;
    }
  Shape ts = xs;
  ts.erase(ts.begin() + 1);
  if (red == ops::Reduction::none) return Tensor::from_vector<double>(per, ts);
  return Tensor::scalar(red == ops::Reduction::sum ? total : total / wsum, DType::f64);
}

TEST(InferenceExtraLoss, NllHandComputed) {
  using ops::Reduction;
  Tensor x = f32({-1.0f, -2.0f, -0.5f, -0.3f, -1.5f, -2.5f}, {2, 3});
  Tensor t = i64({2, 0});
  Tensor w = f32({0.2f, 0.3f, 0.5f});
  expect_near(ops::onnx_loss::nll_loss(x, t, w, std::nullopt, Reduction::none), {0.25, 0.06}, 1e-6);
  expect_near(ops::onnx_loss::nll_loss(x, t, w, std::nullopt, Reduction::sum), {0.31}, 1e-6);
  expect_near(ops::onnx_loss::nll_loss(x, t, w, std::nullopt, Reduction::mean), {0.31 / 0.7}, 1e-6);
  expect_near(ops::onnx_loss::nll_loss(x, t, Tensor(), std::nullopt, Reduction::none), {0.5, 0.3}, 1e-6);
  expect_near(ops::onnx_loss::nll_loss(x, t, Tensor(), std::nullopt, Reduction::mean), {0.4}, 1e-6);
  // ignore_index 0 drops the second sample from the loss and from the mean's denominator.
  expect_near(ops::onnx_loss::nll_loss(x, t, w, 0, Reduction::none), {0.25, 0}, 1e-6);
  expect_near(ops::onnx_loss::nll_loss(x, t, w, 0, Reduction::mean), {0.5}, 1e-6);
  expect_near(ops::onnx_loss::nll_loss(x, t, Tensor(), 0, Reduction::mean), {0.5}, 1e-6);
  Tensor m = ops::onnx_loss::nll_loss(x, t, w, std::nullopt, Reduction::mean);
  EXPECT_EQ(m.dim(), 0);
  EXPECT_EQ(m.dtype(), DType::f32);
  // An ignored target may lie outside [0, C); every target ignored makes the mean 0/0.
  expect_near(ops::onnx_loss::nll_loss(x, i64({-7, -7}), w, -7, Reduction::sum), {0}, 0);
  expect_near(ops::onnx_loss::nll_loss(x, i64({-7, -7}), w, -7, Reduction::mean), {kNan}, 0);
  expect_error<IndexError>(
      [&] {
        ops::onnx_loss::nll_loss(x, i64({3, 0}), w, std::nullopt, Reduction::mean);
      },
      "nll_loss");
  expect_error<IndexError>([&] { ops::onnx_loss::nll_loss(x, i64({-1, 0}), w, 5, Reduction::mean); }, "out of range");
  expect_error<ValueError>(
      [&] {
        ops::onnx_loss::nll_loss(x, i64({1, 0, 0}), w, std::nullopt, Reduction::mean);
      },
      "target");
  expect_error<ValueError>(
      [&] {
        ops::onnx_loss::nll_loss(x, t, f32({1, 2}), std::nullopt, Reduction::mean);
      },
      "weight");
  expect_error<TypeError>(
      [&] {
        ops::onnx_loss::nll_loss(x, f32({1, 0}), w, std::nullopt, Reduction::mean);
      },
      "integer");
}

TEST(InferenceExtraLoss, NllSpatialMatchesReference) {
  using ops::Reduction;
  Generator g(21);
  Shape xs{2, 4, 3, 2};
  Tensor x = uniform(xs, -3, 0, g, DType::f64);
  Tensor tf = uniform({2, 3, 2}, 0, 4, g, DType::f64);
  std::vector<int64_t> t;
  for (double v : vals(tf)) t.push_back(static_cast<int64_t>(v));
  t[1] = -1;
  t[4] = -1;
  std::vector<double> w = {0.5, 1.5, 2.0, 0.25};
  Tensor tt = i64(t, {2, 3, 2});
  for (Reduction red : {Reduction::none, Reduction::sum, Reduction::mean})
    for (bool weighted : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "reduction " << static_cast<int>(red) << " weighted " << weighted);
      Tensor wt = weighted ? Tensor::from_vector<double>(w) : Tensor();
      std::vector<double> wv = weighted ? w : std::vector<double>();
      Tensor want = ref_nll(vals(x), xs, t, wv, -1, red);
      Tensor got = ops::onnx_loss::nll_loss(x, tt, wt, -1, red);
      EXPECT_EQ(got.shape(), want.shape());
      expect_near(got, vals(want), 1e-12);
      // f32 and a strided (non-contiguous) input give the same values.
      Tensor xs32 = ops::transpose(ops::contiguous(ops::transpose(to_dtype_raw(x, DType::f32), 2, 3)), 2, 3);
      expect_near(ops::onnx_loss::nll_loss(xs32, tt, wt, -1, red), vals(want), 1e-5);
    }
}

TEST(InferenceExtraLoss, SoftmaxCrossEntropyMatchesReference) {
  using ops::Reduction;
  // Hand-computed: equal scores give log(1/C) for every class.
  auto [l0, lp0] =
      ops::onnx_loss::cross_entropy(f32({0, 0}, {1, 2}), i64({1}), Tensor(), std::nullopt, Reduction::mean);
  expect_near(l0, {std::log(2.0)}, 1e-6);
  expect_near(lp0, {-std::log(2.0), -std::log(2.0)}, 1e-6);
  Generator g(22);
  Shape xs{3, 5, 4};
  Tensor x = uniform(xs, -4, 4, g, DType::f64);
  std::vector<double> xv = vals(x);
  // log_softmax over dim 1 by its definition.
  std::vector<double> lp(xv.size());
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t d = 0; d < 4; ++d) {
      double s = 0;
      for (int64_t c = 0; c < 5; ++c) s += std::exp(xv[static_cast<size_t>((n * 5 + c) * 4 + d)]);
      for (int64_t c = 0; c < 5; ++c)
        lp[static_cast<size_t>((n * 5 + c) * 4 + d)] = xv[static_cast<size_t>((n * 5 + c) * 4 + d)] - std::log(s);
    }
  std::vector<int64_t> t = {0, 1, 2, 3, 4, 0, 2, 2, 1, 3, 4, 4};
  std::vector<double> w = {0.1, 0.2, 0.3, 0.4, 0.5};
  for (Reduction red : {Reduction::none, Reduction::sum, Reduction::mean}) {
    SCOPED_TRACE(static_cast<int>(red));
    auto [loss, log_prob] = ops::onnx_loss::cross_entropy(x, i64(t, {3, 4}), Tensor::from_vector<double>(w), 2, red);
    expect_near(log_prob, lp, 1e-12);
    EXPECT_EQ(log_prob.shape(), xs);
    expect_near(loss, vals(ref_nll(lp, xs, t, w, 2, red)), 1e-12);
    auto [l32, lp32] =
        ops::onnx_loss::cross_entropy(to_dtype_raw(x, DType::f32), i64(t, {3, 4}), Tensor(), std::nullopt, red);
    EXPECT_EQ(l32.dtype(), DType::f32);
    expect_near(lp32, lp, 1e-5);
    expect_near(l32, vals(ref_nll(lp, xs, t, {}, std::nullopt, red)), 1e-5);
  }
  // Large scores do not overflow.
  auto [lb, lpb] =
      ops::onnx_loss::cross_entropy(f32({1000, 0}, {1, 2}), i64({1}), Tensor(), std::nullopt, Reduction::sum);
  expect_near(lb, {1000}, 1e-6);
  expect_error<ValueError>(
      [] {
        ops::onnx_loss::cross_entropy(f32({1, 2}), i64({0}), Tensor(), std::nullopt, ops::Reduction::mean);
      },
      "cross_entropy");
}

}  // namespace
