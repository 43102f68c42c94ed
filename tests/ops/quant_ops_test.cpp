// Tests for the int8 quant ops (ops/quant_ops.h) against the ONNX spec's examples and plain loops:
// round-half-to-even and saturation, per-tensor and per-axis parameters, the exact int32
// accumulation of matmul_integer / conv_integer (including int32 wrap-around), broadcasting and
// 1-d operands, per-row / per-column / per-channel zero points and scales, and bad inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "kiln/core/rng.h"
#include "kiln/ops/quant_ops.h"

using namespace kiln;

namespace {

// ---------------------------------------------------------------- helpers and references

Tensor f32(const std::vector<float>& v, const Shape& s) { return Tensor::from_vector<float>(v, s); }
Tensor u8(const std::vector<uint8_t>& v, const Shape& s) { return Tensor::from_vector<uint8_t>(v, s); }
Tensor i8(const std::vector<int8_t>& v, const Shape& s) { return Tensor::from_vector<int8_t>(v, s); }
Tensor u8s(uint8_t v) { return Tensor::scalar(v, DType::u8); }
Tensor f32s(float v) { return Tensor::scalar(v, DType::f32); }

// Uniform random 8-bit tensor of dtype t (u8 or i8).
Tensor rand_q(Generator& g, const Shape& s, DType t) {
  Tensor out = Tensor::empty(s, t);
  for (int64_t i = 0; i < out.numel(); ++i) {
    const uint8_t bits = static_cast<uint8_t>(g.next_u64());
    if (t == DType::u8) out.data<uint8_t>()[i] = bits;
    else out.data<int8_t>()[i] = static_cast<int8_t>(bits);
  }
  return out;
}

std::vector<int64_t> ivals(const Tensor& t) { return t.to_vector<int64_t>(); }

void expect_ints(const Tensor& t, DType dtype, const Shape& shape, const std::vector<int64_t>& want) {
  EXPECT_EQ(t.dtype(), dtype);
  ASSERT_EQ(t.shape(), shape);
  EXPECT_EQ(ivals(t), want);
}

// Round half to even, written out (not std::nearbyint) so the reference is independent.
double round_half_even(double v) {
  const double f = std::floor(v), diff = v - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return std::fmod(f, 2.0) == 0 ? f : f + 1;
}

int64_t sat(double v, DType t) {
  const double lo = t == DType::u8 ? 0 : -128, hi = t == DType::u8 ? 255 : 127;
  return static_cast<int64_t>(std::min(hi, std::max(lo, v)));
}

template <typename F>
void expect_error(F f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

// numpy.matmul of int64 matrices given as (shape, values), no zero points (applied by the caller).
struct IntMat {
  Shape shape;
  std::vector<int64_t> v;
};

// Index of element `idx` (of `shape`) in a tensor of `src` shape broadcast to it.
int64_t bcast_index(const std::vector<int64_t>& idx, const Shape& shape, const Shape& src) {
  int64_t off = 0, stride = 1;
  for (int64_t d = static_cast<int64_t>(src.size()) - 1, e = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d, --e) {
    if (src[d] != 1) off += idx[e] * stride;
    stride *= src[d];
  }
  return off;
}

std::vector<int64_t> unravel(int64_t i, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (int64_t d = static_cast<int64_t>(s.size()) - 1; d >= 0; --d) {
    idx[d] = i % s[d];
    i /= s[d];
  }
  return idx;
}

// (a - azp) @ (b - bzp) for a (.., M, K), b (.., K, N); azp broadcast to (.., M, 1) shape
// `azp_shape`, bzp to (.., 1, N). Accumulates in int64 and wraps to int32 at the end.
std::vector<int64_t> ref_matmul_acc(const Tensor& a, const Tensor& b, const std::vector<int64_t>& azp,
                                    const Shape& azp_shape, const std::vector<int64_t>& bzp, const Shape& bzp_shape,
                                    Shape& out_shape) {
  const Shape& as = a.shape();
  const Shape& bs = b.shape();
  const int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
  Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  const size_t nb = std::max(ab.size(), bb.size());
  ab.insert(ab.begin(), nb - ab.size(), 1);
  bb.insert(bb.begin(), nb - bb.size(), 1);
  out_shape.clear();
  for (size_t d = 0; d < nb; ++d) out_shape.push_back(std::max(ab[d], bb[d]));
  out_shape.push_back(M);
  out_shape.push_back(N);
  const std::vector<int64_t> av = ivals(a), bv = ivals(b);
  Shape a_full = ab, b_full = bb;
  a_full.insert(a_full.end(), {M, K});
  b_full.insert(b_full.end(), {K, N});
  std::vector<int64_t> out;
  for (int64_t i = 0; i < kiln::numel(out_shape); ++i) {
    std::vector<int64_t> idx = unravel(i, out_shape);
    const int64_t m = idx[nb], n = idx[nb + 1];
    int64_t s = 0;
    for (int64_t k = 0; k < K; ++k) {
      std::vector<int64_t> ia(idx.begin(), idx.begin() + static_cast<int64_t>(nb)), ib = ia;
      ia.insert(ia.end(), {m, k});
      ib.insert(ib.end(), {k, n});
      std::vector<int64_t> iza(ia), izb(ib);
      iza.back() = 0;
      izb[izb.size() - 2] = 0;
      const int64_t x = av[bcast_index(ia, a_full, a_full)] - azp[bcast_index(iza, a_full, azp_shape)];
      const int64_t y = bv[bcast_index(ib, b_full, b_full)] - bzp[bcast_index(izb, b_full, bzp_shape)];
      s += x * y;
    }
    out.push_back(static_cast<int32_t>(static_cast<uint32_t>(s)));
  }
  return out;
}

// ---------------------------------------------------------------- quantize / dequantize

TEST(QuantizeLinear, OnnxExample) {
  Tensor y = ops::quantize_linear(f32({0, 2, 3, 1000, -254, -1000}, {6}), f32s(2), u8s(128));
  expect_ints(y, DType::u8, {6}, {128, 129, 130, 255, 1, 0});
}

TEST(QuantizeLinear, RoundsHalfToEvenAndSaturatesInt8) {
  Tensor y = ops::quantize_linear(f32({0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 300, -300}, {8}), f32s(1),
                                  Tensor::scalar(0, DType::i8));
  expect_ints(y, DType::i8, {8}, {0, 2, 2, 0, -2, -2, 127, -128});
  // No zero point: u8 with zero point 0.
  expect_ints(ops::quantize_linear(f32({-3, 7.4f}, {2}), f32s(1)), DType::u8, {2}, {0, 7});
}

TEST(QuantizeLinear, PerAxisMatchesLoop) {
  Generator g(3);
  Tensor x = uniform({2, 3, 4}, -40, 40, g, DType::f32);
  const std::vector<float> sc{0.5f, 0.25f, 0.3f};
  const std::vector<int8_t> zp{-3, 0, 10};
  for (int64_t axis : {1, -2}) {
    Tensor y = ops::quantize_linear(x, f32(sc, {3}), i8(zp, {3}), axis);
    const std::vector<float> xv = x.to_vector<float>();
    std::vector<int64_t> want;
    for (size_t i = 0; i < xv.size(); ++i) {
      const size_t c = (i / 4) % 3;
      want.push_back(sat(round_half_even(static_cast<double>(xv[i] / sc[c])) + zp[c], DType::i8));
    }
    expect_ints(y, DType::i8, {2, 3, 4}, want);
  }
  // Per last axis, f64 input.
  Tensor yl = ops::quantize_linear(to_dtype_raw(x, DType::f64), f32({1, 2, 4, 8}, {4}), u8({0, 1, 2, 3}, {4}), -1);
  const std::vector<double> xd = to_dtype_raw(x, DType::f64).to_vector<double>();
  std::vector<int64_t> want;
  for (size_t i = 0; i < xd.size(); ++i)
    want.push_back(sat(round_half_even(xd[i] / std::pow(2.0, i % 4)) + static_cast<double>(i % 4), DType::u8));
  expect_ints(yl, DType::u8, {2, 3, 4}, want);
}

TEST(QuantizeLinear, IntegerInputAndBadInputs) {
  expect_ints(ops::quantize_linear(Tensor::from_vector<int32_t>({-7, 5, 1000}), f32s(2), u8s(10)), DType::u8, {3},
              {6, 12, 255});
  expect_error([] { ops::quantize_linear(f32({1}, {1}), f32s(1), Tensor::scalar(0, DType::i32)); }, "quantize_linear");
  expect_error([] { ops::quantize_linear(f32({1, 2}, {1, 2}), f32({1, 2, 3}, {3}), Tensor(), 1); }, "per-axis");
  expect_error([] { ops::quantize_linear(f32({1, 2}, {1, 2}), f32({1, 2}, {2}), u8({0}, {1}), 1); }, "same shape");
  expect_error([] { ops::quantize_linear(f32({1, 2}, {1, 2}), Tensor::from_vector<int64_t>({1}), Tensor()); },
               "float");
}

TEST(DequantizeLinear, OnnxExamplePerAxisAndInt32) {
  expect_ints(ops::dequantize_linear(u8({0, 3, 128, 255}, {4}), f32s(2), u8s(128)), DType::f32, {4},
              {-256, -250, 0, 254});
  // Per axis 1 of (1, 3, 2): scales {1, 2, 4}, zero points {0, 10, -5}.
  Tensor y = ops::dequantize_linear(i8({3, 4, 10, 20, -5, 5}, {1, 3, 2}), f32({1, 2, 4}, {3}), i8({0, 10, -5}, {3}));
  expect_ints(y, DType::f32, {1, 3, 2}, {3, 4, 0, 20, 0, 40});
  expect_ints(ops::dequantize_linear(Tensor::from_vector<int32_t>({-100, 7}), f32s(0.5f)), DType::f32, {2}, {-50, 3});
  Tensor half = ops::dequantize_linear(Tensor::from_vector<int32_t>({7}), f32s(0.5f));
  EXPECT_EQ(half.item(), 3.5);
  expect_error([] { ops::dequantize_linear(Tensor::from_vector<int32_t>({1}), f32s(1), Tensor::scalar(2, DType::i32)); },
               "zero point");
  expect_error([] { ops::dequantize_linear(u8({1}, {1}), f32s(1), Tensor::scalar(0, DType::i8)); }, "x_zero_point");
  expect_error([] { ops::dequantize_linear(f32({1}, {1}), f32s(1)); }, "dequantize_linear");
}

TEST(DynamicQuantizeLinear, OnnxExamples) {
  // test_dynamicquantizelinear, computed from the spec's formula in f32.
  auto check = [](const std::vector<float>& x) {
    ops::DynamicQuantized q = ops::dynamic_quantize_linear(f32(x, {static_cast<int64_t>(x.size())}));
    float lo = 0, hi = 0;
    for (float v : x) lo = std::min(lo, v), hi = std::max(hi, v);
    const float scale = (hi - lo) / 255.0f;
    const double zp = round_half_even(std::min(255.0, std::max(0.0, static_cast<double>(0.0f - lo / scale))));
    EXPECT_EQ(q.y_scale.dtype(), DType::f32);
    EXPECT_EQ(q.y_scale.dim(), 0);
    EXPECT_EQ(static_cast<float>(q.y_scale.item()), scale);
    EXPECT_EQ(q.y_zero_point.dtype(), DType::u8);
    EXPECT_EQ(q.y_zero_point.item(), zp);
    std::vector<int64_t> want;
    for (float v : x) want.push_back(sat(round_half_even(static_cast<double>(v / scale)) + zp, DType::u8));
    expect_ints(q.y, DType::u8, {static_cast<int64_t>(x.size())}, want);
    return ivals(q.y);
  };
  EXPECT_EQ(check({0, 2, -3, -2.5f, 1.34f, 0.5f}), (std::vector<int64_t>{153, 255, 0, 26, 221, 179}));
  EXPECT_EQ(check({-1.0f, -2.1f, -1.3f, -2.5f, -3.34f, -4.0f}), (std::vector<int64_t>{191, 121, 172, 96, 42, 0}));
  check({1, 2.1f, 1.3f, 2.5f, 3.34f, 4.0f, 1.5f, 2.6f, 3.9f, 4.0f, 3.0f, 2.345f});
}

TEST(DynamicQuantizeLinear, AllZerosUseScaleOne) {
  ops::DynamicQuantized q = ops::dynamic_quantize_linear(Tensor::zeros({3}));
  EXPECT_EQ(q.y_scale.item(), 1.0);
  EXPECT_EQ(q.y_zero_point.item(), 0.0);
  expect_ints(q.y, DType::u8, {3}, {0, 0, 0});
  expect_error([] { ops::dynamic_quantize_linear(Tensor::zeros({3}, DType::f64)); }, "dynamic_quantize_linear");
}

// ---------------------------------------------------------------- matmul_integer

TEST(MatMulInteger, OnnxExample) {
  Tensor a = u8({11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0}, {4, 3});
  Tensor b = u8({1, 4, 2, 5, 3, 6}, {3, 2});
  expect_ints(ops::matmul_integer(a, b, u8s(12), u8s(0)), DType::i32, {4, 2},
              {-38, -83, -44, -98, -50, -113, -56, -128});
}

struct MatmulCase {
  Shape a, b;
  DType ta, tb;
  Shape azp, bzp;  // empty shape with per_tensor: one value; {} and !has: no zero point
  bool has_azp, has_bzp;
};

TEST(MatMulInteger, MatchesLoopAcrossShapesAndZeroPoints) {
  const std::vector<MatmulCase> cases{
      {{5, 7}, {7, 3}, DType::u8, DType::u8, {}, {}, true, true},
      {{5, 7}, {7, 3}, DType::i8, DType::u8, {5}, {3}, true, true},        // per row / per column
      {{2, 1, 4, 6}, {3, 6, 5}, DType::u8, DType::i8, {2, 1, 4, 1}, {3, 1, 5}, true, true},  // broadcast batch
      {{3, 4, 6}, {6, 2}, DType::i8, DType::i8, {}, {2}, false, true},
      {{2, 3, 4}, {2, 4, 5}, DType::u8, DType::u8, {}, {}, true, false},
  };
  Generator g(11);
  for (const MatmulCase& c : cases) {
    Tensor a = rand_q(g, c.a, c.ta), b = rand_q(g, c.b, c.tb);
    Tensor azp = c.has_azp ? rand_q(g, c.azp, c.ta) : Tensor(), bzp = c.has_bzp ? rand_q(g, c.bzp, c.tb) : Tensor();
    // The reference's zero-point shapes: a's as (.., M, 1), b's as (.., 1, N).
    Shape azs = c.azp.empty() ? Shape{1, 1} : c.azp, bzs = c.bzp.empty() ? Shape{1, 1} : c.bzp;
    if (c.azp.size() == 1 && c.a.size() >= 2) azs = {c.azp[0], 1};
    if (c.bzp.size() == 1) bzs = {1, c.bzp[0]};
    std::vector<int64_t> azv = c.has_azp ? ivals(azp) : std::vector<int64_t>{0};
    std::vector<int64_t> bzv = c.has_bzp ? ivals(bzp) : std::vector<int64_t>{0};
    Shape out_shape;
    const std::vector<int64_t> want = ref_matmul_acc(a, b, azv, azs, bzv, bzs, out_shape);
    expect_ints(ops::matmul_integer(a, b, azp, bzp), DType::i32, out_shape, want);
  }
}

TEST(MatMulInteger, OneDimOperandsAndStridedInputs) {
  Tensor a = u8({1, 2, 3}, {3}), b = u8({1, 2, 3, 4, 5, 6}, {3, 2});
  expect_ints(ops::matmul_integer(a, b), DType::i32, {2}, {22, 28});
  expect_ints(ops::matmul_integer(b.as_strided({2, 3}, {1, 2}, 0), a, Tensor(), u8s(1)), DType::i32, {2}, {1 * 0 + 3 * 1 + 5 * 2, 2 * 0 + 4 * 1 + 6 * 2});
  expect_ints(ops::matmul_integer(a, a), DType::i32, {}, {14});
}

TEST(MatMulInteger, AccumulatesInInt32WithWrapAround) {
  // 40000 * 255 * 255 = 2601000000 does not fit in int32: ONNX allows the accumulation to wrap.
  const int64_t K = 40000;
  Tensor a = Tensor::full({1, K}, 255, DType::u8), b = Tensor::full({K, 1}, 255, DType::u8);
  expect_ints(ops::matmul_integer(a, b), DType::i32, {1, 1}, {2601000000LL - 4294967296LL});
}

TEST(MatMulInteger, BadInputs) {
  expect_error([] { ops::matmul_integer(u8({1, 2}, {1, 2}), u8({1, 2, 3}, {3, 1})); }, "inner dimensions");
  expect_error([] { ops::matmul_integer(f32({1}, {1, 1}), u8({1}, {1, 1})); }, "u8 or i8");
  expect_error([] { ops::matmul_integer(u8({1}, {1, 1}), u8({1}, {1, 1}), Tensor::scalar(0, DType::i8)); },
               "a_zero_point");
  expect_error([] { ops::matmul_integer(u8({1, 2, 3, 4}, {2, 2}), u8({1, 2}, {2, 1}), u8({1, 2, 3}, {3})); },
               "broadcast");
}

// ---------------------------------------------------------------- conv_integer

struct ConvRef {
  std::vector<int64_t> strides, pads, dilations;
  int64_t groups = 1;
};

// Direct N-d convolution of (x - xzp) and (w - wzp[m]) with zero padding; int64 sums wrapped to int32.
std::vector<int64_t> ref_conv(const Tensor& x, const Tensor& w, int64_t xzp, const std::vector<int64_t>& wzp,
                              const ConvRef& o, Shape& out_shape) {
  const Shape& xs = x.shape();
  const Shape& ws = w.shape();
  const size_t k = xs.size() - 2;
  const int64_t N = xs[0], C = xs[1], M = ws[0], Cg = C / o.groups, Mg = M / o.groups;
  out_shape = {N, M};
  for (size_t j = 0; j < k; ++j)
    out_shape.push_back((xs[2 + j] + o.pads[j] + o.pads[j + k] - o.dilations[j] * (ws[2 + j] - 1) - 1) / o.strides[j] + 1);
  const std::vector<int64_t> xv = ivals(x), wv = ivals(w);
  Shape ker(ws.begin() + 2, ws.end());
  std::vector<int64_t> out;
  for (int64_t i = 0; i < kiln::numel(out_shape); ++i) {
    std::vector<int64_t> oi = unravel(i, out_shape);
    const int64_t n = oi[0], m = oi[1], g = m / Mg;
    int64_t s = 0;
    for (int64_t c = 0; c < Cg; ++c)
      for (int64_t t = 0; t < kiln::numel(ker); ++t) {
        std::vector<int64_t> kk = unravel(t, ker);
        int64_t xi = n * C + g * Cg + c;
        bool inside = true;
        for (size_t j = 0; j < k; ++j) {
          const int64_t p = oi[2 + j] * o.strides[j] - o.pads[j] + kk[j] * o.dilations[j];
          inside = inside && p >= 0 && p < xs[2 + j];
          xi = xi * xs[2 + j] + p;
        }
        if (!inside) continue;
        const int64_t wi = (m * Cg + c) * kiln::numel(ker) + t;
        s += (xv[xi] - xzp) * (wv[wi] - wzp[wzp.size() == 1 ? 0 : m]);
      }
    out.push_back(static_cast<int32_t>(static_cast<uint32_t>(s)));
  }
  return out;
}

TEST(ConvInteger, OnnxExample) {  // test_basic_convinteger
  Tensor x = u8({2, 3, 4, 5, 6, 7, 8, 9, 10}, {1, 1, 3, 3});
  Tensor w = u8({1, 1, 1, 1}, {1, 1, 2, 2});
  expect_ints(ops::conv_integer(x, w, u8s(1)), DType::i32, {1, 1, 2, 2}, {12, 16, 24, 28});
  // test_convinteger_with_padding: the padding is x's zero point (contributes nothing).
  ops::QuantConvOptions o;
  o.pads = {1, 1, 1, 1};
  expect_ints(ops::conv_integer(x, w, u8s(1), Tensor(), o), DType::i32, {1, 1, 4, 4},
              {1, 3, 5, 3, 5, 12, 16, 9, 11, 24, 28, 15, 7, 15, 17, 9});
}

struct ConvCase {
  Shape x, w;
  DType tx, tw;
  ConvRef o;
  bool per_channel_wzp;
};

TEST(ConvInteger, MatchesLoopIn1d2d3d) {
  const std::vector<ConvCase> cases{
      {{2, 3, 9}, {4, 3, 3}, DType::u8, DType::u8, {{2}, {1, 2}, {1}, 1}, false},
      {{1, 4, 7, 6}, {6, 2, 3, 2}, DType::u8, DType::i8, {{1, 2}, {1, 0, 2, 1}, {2, 1}, 2}, true},
      {{2, 2, 5, 5}, {2, 1, 3, 3}, DType::i8, DType::i8, {{2, 2}, {1, 1, 1, 1}, {1, 1}, 2}, true},
      {{1, 2, 4, 5, 3}, {3, 2, 2, 3, 2}, DType::i8, DType::u8, {{1, 2, 1}, {0, 1, 1, 1, 0, 0}, {1, 1, 2}, 1}, false},
  };
  Generator g(5);
  for (const ConvCase& c : cases) {
    Tensor x = rand_q(g, c.x, c.tx), w = rand_q(g, c.w, c.tw);
    Tensor xzp = rand_q(g, {}, c.tx), wzp = rand_q(g, c.per_channel_wzp ? Shape{c.w[0]} : Shape{}, c.tw);
    ops::QuantConvOptions o{c.o.strides, c.o.pads, c.o.dilations, c.o.groups};
    Shape out_shape;
    const std::vector<int64_t> want = ref_conv(x, w, ivals(xzp)[0], ivals(wzp), c.o, out_shape);
    expect_ints(ops::conv_integer(x, w, xzp, wzp, o), DType::i32, out_shape, want);
  }
}

TEST(ConvInteger, BadInputs) {
  Tensor x = u8({1, 2, 3, 4}, {1, 1, 2, 2}), w = u8({1}, {1, 1, 1, 1});
  expect_error([&] { ops::conv_integer(x, u8({1, 2}, {1, 2, 1, 1})); }, "input channels");
  expect_error([&] { ops::conv_integer(x, w, u8({1, 2}, {2})); }, "x_zero_point");
  expect_error([&] { ops::conv_integer(x, w, Tensor(), u8({1, 2}, {2})); }, "w_zero_point");
  expect_error([&] { ops::conv_integer(x, u8({1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 3, 3})); }, "larger than");
  ops::QuantConvOptions o;
  o.strides = {1};
  expect_error([&] { ops::conv_integer(x, w, Tensor(), Tensor(), o); }, "strides");
}

// ---------------------------------------------------------------- qlinear_matmul, qlinear_conv

TEST(QLinearMatMul, OnnxExample2D) {  // test_qlinearmatmul_2D
  Tensor a = u8({208, 236, 0, 238, 3, 214, 255, 29}, {2, 4});
  Tensor b = u8({152, 51, 244, 60, 26, 255, 0, 127, 246, 127, 254, 247}, {4, 3});
  Tensor y = ops::qlinear_matmul(a, f32s(0.0066f), u8s(113), b, f32s(0.00705f), u8s(114), f32s(0.0107f), u8s(118));
  expect_ints(y, DType::u8, {2, 3}, {168, 115, 255, 1, 66, 151});
}

TEST(QLinearMatMul, PerRowAndPerColumnScalesMatchLoop) {
  Generator g(9);
  const int64_t B = 2, M = 3, K = 5, N = 4;
  Tensor a = rand_q(g, {B, M, K}, DType::i8), b = rand_q(g, {K, N}, DType::u8);
  Tensor azp = rand_q(g, {B, M, 1}, DType::i8), bzp = rand_q(g, {N}, DType::u8);
  Tensor as = uniform({B, M, 1}, 0.01, 0.05, g, DType::f32), bs = uniform({N}, 0.01, 0.05, g, DType::f32);
  const float ys = 0.02f;
  Tensor y = ops::qlinear_matmul(a, as, azp, b, bs, bzp, f32s(ys), Tensor::scalar(-7, DType::i8));
  Shape out_shape;
  const std::vector<int64_t> acc = ref_matmul_acc(a, b, ivals(azp), {B, M, 1}, ivals(bzp), {1, N}, out_shape);
  const std::vector<float> asv = as.to_vector<float>(), bsv = bs.to_vector<float>();
  std::vector<int64_t> want;
  for (int64_t i = 0; i < B * M * N; ++i) {
    const float mult = asv[i / N] * bsv[i % N] / ys;
    want.push_back(sat(round_half_even(static_cast<double>(static_cast<float>(acc[i]) * mult)) - 7, DType::i8));
  }
  expect_ints(y, DType::i8, {B, M, N}, want);
  expect_error([&] { ops::qlinear_matmul(a, as, azp, b, bs, bzp, f32({1, 2}, {2}), u8s(0)); }, "y_scale");
}

TEST(QLinearConv, HandComputed) {
  // acc = (x - 10) * (3 - 1) + 4 = {4, 24, 44, 64}; multiplier 0.5 * 0.25 / 0.1 = 1.25; + 5.
  Tensor y = ops::qlinear_conv(u8({10, 20, 30, 40}, {1, 1, 2, 2}), f32s(0.5f), u8s(10), u8({3}, {1, 1, 1, 1}),
                               f32s(0.25f), u8s(1), f32s(0.1f), u8s(5), Tensor::from_vector<int32_t>({4}));
  expect_ints(y, DType::u8, {1, 1, 2, 2}, {10, 35, 60, 85});
}

TEST(QLinearConv, PerChannelMatchesLoop) {
  Generator g(21);
  Tensor x = rand_q(g, {2, 4, 6, 5}, DType::u8), w = rand_q(g, {6, 2, 3, 3}, DType::i8);
  Tensor xzp = rand_q(g, {}, DType::u8), wzp = rand_q(g, {6}, DType::i8);
  Tensor ws = uniform({6}, 0.001, 0.01, g, DType::f32);
  Tensor bias = Tensor::from_vector<int32_t>({-500, 0, 20, 7000, -3, 100});
  const float xs = 0.05f, ys = 0.3f;
  ConvRef r{{2, 1}, {1, 1, 0, 2}, {1, 2}, 2};
  ops::QuantConvOptions o{r.strides, r.pads, r.dilations, r.groups};
  Tensor y = ops::qlinear_conv(x, f32s(xs), xzp, w, ws, wzp, f32s(ys), u8s(128), bias, o);
  Shape out_shape;
  const std::vector<int64_t> acc = ref_conv(x, w, ivals(xzp)[0], ivals(wzp), r, out_shape);
  const std::vector<float> wsv = ws.to_vector<float>();
  const std::vector<int64_t> bv = ivals(bias);
  const int64_t P = out_shape[2] * out_shape[3];
  std::vector<int64_t> want;
  for (size_t i = 0; i < acc.size(); ++i) {
    const int64_t m = (static_cast<int64_t>(i) / P) % 6;
    const float mult = xs * wsv[m] / ys;
    want.push_back(sat(round_half_even(static_cast<double>(static_cast<float>(acc[i] + bv[m]) * mult)) + 128, DType::u8));
  }
  expect_ints(y, DType::u8, out_shape, want);
  expect_error([&] { ops::qlinear_conv(x, f32s(xs), xzp, w, f32({1, 2}, {2}), wzp, f32s(ys), u8s(0), bias, o); },
               "w_scale");
  expect_error([&] { ops::qlinear_conv(x, f32s(xs), xzp, w, ws, wzp, f32s(ys), u8s(0), Tensor::zeros({6}), o); },
               "bias");
}

}  // namespace
