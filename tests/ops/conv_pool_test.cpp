// Convolution with a fused 2x2 stride-2 max pool (cpu::conv_forward_pool2_f32, Conv2dOptions::max_pool2):
// for the direct and both Winograd algorithms, every kernel build this CPU runs, 1 and 2 threads,
// with and without ReLU and bias, the pooled output must be bitwise the separate pool of the same
// algorithm's convolution (NaN, infinities and signed zeros included), and close to plain double
// loops. The op falls back to convolve-then-pool for im2col, f64 and autograd, bitwise the same.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "kiln/autograd/engine.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/conv_algo.h"
#include "kiln/ops/cpu/winograd.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/nn_ops.h"
#include "kiln/ops/reduce.h"

namespace kiln::ops {
namespace {

using cpu::ConvAlgo;
using cpu::ConvShape;

std::vector<float> values(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  uint64_t s = seed * 2654435761u + 7;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>((s >> 40) % 2001) / 1000.0f - 1.0f;
  }
  return v;
}

ConvShape shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t K, int64_t pad = 0, bool bias = true) {
  ConvShape s;
  s.N = N, s.C = C, s.H = H, s.W = W, s.O = O, s.KH = s.KW = K, s.ph = s.pw = pad, s.bias = bias;
  return s;
}

// The separate pool, written out: taps in row-major order, a larger or NaN tap wins (ops/pool.cpp).
std::vector<float> pool2(const std::vector<float>& y, int64_t planes, int64_t OH, int64_t OW) {
  const int64_t PH = OH / 2, PW = OW / 2;
  std::vector<float> out(static_cast<size_t>(planes * PH * PW));
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < PH; ++i)
      for (int64_t j = 0; j < PW; ++j) {
        const float* r0 = y.data() + (p * OH + 2 * i) * OW + 2 * j;
        const float* r1 = r0 + OW;
        float m = r0[0];
        for (float v : {r0[1], r1[0], r1[1]}) m = (v > m || v != v) ? v : m;
        out[static_cast<size_t>((p * PH + i) * PW + j)] = m;
      }
  return out;
}

// Plain double loops: pooled act(conv + b).
std::vector<double> reference(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                              const std::vector<float>& b, bool relu) {
  const int64_t OH = s.OH(), OW = s.OW();
  std::vector<float> y(static_cast<size_t>(s.N * s.O * OH * OW));
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < s.O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double acc = s.bias ? b[o] : 0.0;
          for (int64_t c = 0; c < s.C; ++c)
            for (int64_t kh = 0; kh < s.KH; ++kh)
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                const int64_t ih = oh - s.ph + kh, iw = ow - s.pw + kw;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                acc += double(x[((n * s.C + c) * s.H + ih) * s.W + iw]) * w[((o * s.C + c) * s.KH + kh) * s.KW + kw];
              }
          const double v = relu ? std::max(acc, 0.0) : acc;
          y[static_cast<size_t>(((n * s.O + o) * OH + oh) * OW + ow)] = static_cast<float>(v);
        }
  const std::vector<float> p = pool2(y, s.N * s.O, OH, OW);
  return {p.begin(), p.end()};
}

void expect_bitwise(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i]) && bad++ < 5)
      ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", unfused " << want[i];
}

std::vector<std::string> isas_for(ConvAlgo a) {
  std::vector<std::string> out;
  for (const char* isa : {"portable", "avx2", "avx512"})
    if (a == ConvAlgo::direct ? cpu::direct_kernels(isa) != nullptr : cpu::winograd_kernels(isa) != nullptr)
      out.push_back(isa);
  return out;
}

std::string describe(const ConvShape& s, ConvAlgo a, const std::string& isa, bool relu, int threads) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s/%s N%lld C%lld %lldx%lld O%lld k%lld p%lld b%d relu%d t%d",
                std::string(cpu::conv_algo_name(a)).c_str(), isa.c_str(), (long long)s.N, (long long)s.C,
                (long long)s.H, (long long)s.W, (long long)s.O, (long long)s.KH, (long long)s.ph, s.bias ? 1 : 0,
                relu ? 1 : 0, threads);
  return buf;
}

struct ThreadsGuard {
  int saved = get_num_threads();
  ~ThreadsGuard() { set_num_threads(saved); }
};

TEST(ConvPool2, EveryPoolingAlgorithmIsBitwiseTheSeparatePool) {
  const std::vector<ConvShape> shapes = {
      shape(2, 1, 28, 28, 7, 3),             // the cnn's first layer (pooled rows of 13)
      shape(9, 17, 13, 13, 5, 3),            // the cnn's second layer, odd conv output 11, ragged lanes
      shape(3, 3, 12, 12, 4, 3, 1, false),   // padded, even output, no bias
      shape(1, 2, 40, 41, 3, 3, 1),          // pooled rows of 20 (two vectors, the last overlapping)
      shape(2, 3, 11, 9, 5, 5, 2),           // 5x5 (direct only)
      shape(3, 2, 5, 6, 3, 3),               // pooled rows narrower than a vector
      shape(1, 4, 4, 4, 2, 3),               // a 2x2 conv output: one pooled value
      shape(2, 3, 7, 36, 3, 3, 0),           // wide rows: pooled 17 (vectors of 8 and 16)
  };
  ThreadsGuard guard;
  for (const ConvShape& s : shapes) {
    const std::vector<float> x = values(s.N * s.C * s.H * s.W, 1), w = values(s.O * s.C * s.KH * s.KW, 2),
                             b = values(s.O, 3);
    const float* bp = s.bias ? b.data() : nullptr;
    for (ConvAlgo a : {ConvAlgo::direct, ConvAlgo::winograd2, ConvAlgo::winograd4}) {
      if (!cpu::conv_algo_applicable(a, s)) continue;
      for (const std::string& isa : isas_for(a))
        for (bool relu : {false, true})
          for (int threads : {1, 2}) {
            set_num_threads(threads);
            const std::string what = describe(s, a, isa, relu, threads);
            std::vector<float> y(static_cast<size_t>(s.N * s.O * s.OH() * s.OW()));
            cpu::conv_forward_f32(a, s, x.data(), w.data(), bp, y.data(), isa, relu);
            std::vector<float> got(static_cast<size_t>(s.N * s.O * (s.OH() / 2) * (s.OW() / 2)), NAN);
            cpu::conv_forward_pool2_f32(a, s, x.data(), w.data(), bp, got.data(), isa, relu);
            expect_bitwise(got, pool2(y, s.N * s.O, s.OH(), s.OW()), what);
            const std::vector<double> want = reference(s, x, w, b, relu);
            for (size_t i = 0; i < got.size(); ++i)
              ASSERT_NEAR(got[i], want[i], 3e-5 * (s.C * s.KH * s.KW + 1)) << what << " element " << i;
          }
    }
  }
}

TEST(ConvPool2, NanInfinityAndSignedZeroPoolAsTheSeparatePool) {
  const ConvShape s = shape(8, 2, 14, 22, 3, 3, 1);
  std::vector<float> x = values(s.N * s.C * s.H * s.W, 4), w = values(s.O * s.C * 9, 5), b(3, 0.0f);
  x[37] = std::numeric_limits<float>::quiet_NaN();
  x[500] = std::numeric_limits<float>::infinity();
  x[1400] = -std::numeric_limits<float>::infinity();
  for (size_t i = 2000; i < 2400; ++i) x[i] = i % 2 ? -0.0f : 0.0f;  // zero sums of either sign
  for (ConvAlgo a : {ConvAlgo::direct, ConvAlgo::winograd2, ConvAlgo::winograd4})
    for (bool relu : {false, true}) {
      std::vector<float> y(static_cast<size_t>(s.N * s.O * s.OH() * s.OW()));
      cpu::conv_forward_f32(a, s, x.data(), w.data(), b.data(), y.data(), {}, relu);
      std::vector<float> got(static_cast<size_t>(s.N * s.O * (s.OH() / 2) * (s.OW() / 2)));
      cpu::conv_forward_pool2_f32(a, s, x.data(), w.data(), b.data(), got.data(), {}, relu);
      expect_bitwise(got, pool2(y, s.N * s.O, s.OH(), s.OW()), std::string(cpu::conv_algo_name(a)) +
                                                                   (relu ? " relu" : ""));
    }
}

// Batches below kWinoLanes / 2 with channel counts divisible by 8 run Winograd with channels in
// the vector lanes. The transforms and the GEMM sum in the same order as the image-lane layout,
// so each image's output is bitwise what a batch of 4 (image lanes) gives for it; prepared
// weights (winograd_weights, packed once) change nothing either.
TEST(ConvPool2, WinogradChannelLanesMatchImageLanesAndTheReference) {
  ThreadsGuard guard;
  for (const ConvShape& one : {shape(1, 32, 13, 13, 64, 3), shape(1, 8, 11, 9, 16, 3, 1), shape(1, 16, 6, 7, 8, 3, 1)})
    for (int m : {2, 4})
      for (bool pool : {false, true})
        for (int threads : {1, 2}) {
          set_num_threads(threads);
          ConvShape four = one;
          four.N = 4;
          ASSERT_TRUE(cpu::winograd_channel_lanes(one));
          ASSERT_FALSE(cpu::winograd_channel_lanes(four));
          const int64_t chw = one.C * one.H * one.W, f = pool ? 2 : 1;
          const int64_t per = one.O * (one.OH() / f) * (one.OW() / f);
          std::vector<float> x = values(4 * chw, 11), w = values(one.O * one.C * 9, 12), b = values(one.O, 13);
          const auto& k = *cpu::winograd_kernels();
          auto run = [&](const ConvShape& s, const cpu::WinogradWeights* pre) {
            std::vector<float> y(static_cast<size_t>(s.N * per), NAN);
            if (pool)
              cpu::winograd_forward_pool2(m, s, x.data(), w.data(), b.data(), true, y.data(), k, pre);
            else
              cpu::winograd_forward(m, s, x.data(), w.data(), b.data(), true, y.data(), nullptr, k, pre);
            return y;
          };
          const std::string what = describe(one, m == 2 ? ConvAlgo::winograd2 : ConvAlgo::winograd4, "default",
                                            true, threads) + (pool ? " pooled" : "");
          const std::vector<float> batch4 = run(four, nullptr), single = run(one, nullptr);
          expect_bitwise(single, std::vector<float>(batch4.begin(), batch4.begin() + per), what);
          const auto pre = cpu::winograd_weights(m, one, w.data());
          expect_bitwise(run(one, pre.get()), single, what + " prepared");
          expect_bitwise(run(four, pre.get()), batch4, what + " prepared, image lanes");
          std::vector<double> want = reference(one, x, w, b, true);
          if (!pool) {  // the reference pools; compare the unpooled output through the same pool
            const std::vector<float> pooled = pool2(single, one.O, one.OH(), one.OW());
            for (size_t i = 0; i < pooled.size(); ++i)
              ASSERT_NEAR(pooled[i], want[i], 3e-5 * (one.C * 9 + 1)) << what << " element " << i;
          } else {
            for (size_t i = 0; i < single.size(); ++i)
              ASSERT_NEAR(single[i], want[i], 3e-5 * (one.C * 9 + 1)) << what << " element " << i;
          }
        }
}

TEST(ConvPool2, Im2colIsRefusedByTheFusedEntryPoint) {
  const ConvShape s = shape(1, 1, 6, 6, 1, 3);
  std::vector<float> x(36, 1.0f), w(9, 1.0f), y(4);
  EXPECT_FALSE(cpu::conv_algo_pools(ConvAlgo::im2col));
  EXPECT_THROW(cpu::conv_forward_pool2_f32(ConvAlgo::im2col, s, x.data(), w.data(), nullptr, y.data()), Error);
}

// The op, whichever algorithm the shape resolves to (Winograd for a batch, im2col for one
// image, the chunked fallback for a large batch), f64, and autograd.
TEST(ConvPool2, OpMatchesConvThenPool) {
  struct Case {
    Shape x, w;
    int64_t pad;
    bool relu;
  };
  for (const Case& c : {Case{{64, 32, 13, 13}, {64, 32, 3, 3}, 0, true}, Case{{1, 32, 13, 13}, {64, 32, 3, 3}, 0, true},
                        Case{{64, 1, 28, 28}, {32, 1, 3, 3}, 0, true}, Case{{5, 3, 10, 11}, {4, 3, 3, 3}, 1, false},
                        Case{{300, 8, 16, 16}, {16, 8, 5, 5}, 2, true}})
    for (DType dt : {DType::f32, DType::f64}) {
      Tensor x = to(Tensor::from_vector(values(numel(c.x), 6), c.x), dt);
      Tensor w = to(Tensor::from_vector(values(numel(c.w), 7), c.w), dt);
      Tensor b = to(Tensor::from_vector(values(c.w[0], 8), {c.w[0]}), dt);
      Conv2dOptions o;
      o.padding = {c.pad, c.pad};
      o.relu = c.relu;
      Tensor want = max_pool2d(conv2d(x, w, b, o), {2, 2});
      o.max_pool2 = true;
      Tensor got = conv2d(x, w, b, o);
      ASSERT_EQ(got.shape(), want.shape());
      EXPECT_EQ(to(got, DType::f64).to_vector<double>(), to(want, DType::f64).to_vector<double>())
          << shape_str(c.x) << " " << dtype_name(dt);
    }
  // With autograd: the composition, so gradients flow.
  Tensor x = Tensor::from_vector(values(2 * 9 * 9, 9), {2, 1, 9, 9});
  x.set_requires_grad(true);
  Tensor w = Tensor::from_vector(values(2 * 9, 10), {2, 1, 3, 3});
  w.set_requires_grad(true);
  Conv2dOptions pooled;
  pooled.max_pool2 = true;
  Tensor y = conv2d(x, w, Tensor(), pooled);
  EXPECT_EQ(y.shape(), (Shape{2, 2, 3, 3}));
  autograd::backward(sum(y));
  ASSERT_TRUE(w.grad().defined());
  Tensor x2 = x.detach(), w2 = w.detach();
  x2.set_requires_grad(true), w2.set_requires_grad(true);
  autograd::backward(sum(max_pool2d(conv2d(x2, w2), {2, 2})));
  EXPECT_EQ(w.grad().to_vector<float>(), w2.grad().to_vector<float>());
  EXPECT_EQ(x.grad().to_vector<float>(), x2.grad().to_vector<float>());
}

}  // namespace
}  // namespace kiln::ops
