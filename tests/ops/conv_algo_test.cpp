// Every f32 convolution algorithm (im2col, direct, Winograd F(2,3) and F(4,3)) and every kernel
// build this CPU can run, forward, input gradient, weight gradient and bias gradient, against
// plain double loops on awkward shapes (batch 1 and ragged lane blocks, 1/3/17 input channels,
// 1/5/33 output channels, sizes 1..30 incl. odd, padding 0..3, stride 2, dilation, groups, non-3x3
// kernels); the combined backward with the forward's saved buffers; bitwise reproducibility; and
// the measured selection storing its winner in the tuning cache.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kiln/autograd/engine.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/conv_algo.h"
#include "kiln/ops/nn_ops.h"
#include "kiln/ops/cpu/tune_cache.h"
#include "kiln/ops/cpu/winograd.h"

namespace kiln::ops::cpu {
namespace {

std::vector<float> values(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  uint64_t s = seed * 2654435761u + 99;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>((s >> 40) % 2001) / 1000.0f - 1.0f;
  }
  return v;
}

// The reference: a value and the sum of the absolute values of its terms (the scale its
// floating-point error is measured against).
struct Ref {
  std::vector<double> v, mag;
};

// Calls f(n, o, oh, ow, c, kh, kw, ih, iw) for every (output, tap) pair that reads inside the image.
template <typename F>
void for_each_term(const ConvShape& s, F f) {
  const int64_t Cg = s.Cg(), Og = s.Og();
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < s.O; ++o)
      for (int64_t oh = 0; oh < s.OH(); ++oh)
        for (int64_t ow = 0; ow < s.OW(); ++ow)
          for (int64_t cg = 0; cg < Cg; ++cg)
            for (int64_t kh = 0; kh < s.KH; ++kh)
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                const int64_t ih = oh * s.sh - s.ph + kh * s.dh, iw = ow * s.sw - s.pw + kw * s.dw;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                f(n, o, oh, ow, (o / Og) * Cg + cg, cg, kh, kw, ih, iw);
              }
}

struct Problem {
  ConvShape s;
  std::vector<float> x, w, b, gy;
  Ref y, gx, gw, gb;

  explicit Problem(const ConvShape& shape, uint64_t seed = 1) : s(shape) {
    const int64_t OH = s.OH(), OW = s.OW();
    x = values(s.N * s.C * s.H * s.W, seed);
    w = values(s.O * s.Cg() * s.KH * s.KW, seed + 1);
    b = values(s.O, seed + 2);
    gy = values(s.N * s.O * OH * OW, seed + 3);
    auto init = [](Ref& r, int64_t n) { r.v.assign(static_cast<size_t>(n), 0.0), r.mag.assign(static_cast<size_t>(n), 0.0); };
    init(y, s.N * s.O * OH * OW), init(gx, s.N * s.C * s.H * s.W), init(gw, s.O * s.Cg() * s.KH * s.KW), init(gb, s.O);
    auto xi = [&](int64_t n, int64_t c, int64_t ih, int64_t iw) { return ((n * s.C + c) * s.H + ih) * s.W + iw; };
    auto wi = [&](int64_t o, int64_t cg, int64_t kh, int64_t kw) { return ((o * s.Cg() + cg) * s.KH + kh) * s.KW + kw; };
    auto yi = [&](int64_t n, int64_t o, int64_t oh, int64_t ow) { return ((n * s.O + o) * OH + oh) * OW + ow; };
    for_each_term(s, [&](int64_t n, int64_t o, int64_t oh, int64_t ow, int64_t c, int64_t cg, int64_t kh, int64_t kw,
                         int64_t ih, int64_t iw) {
      const double xv = x[xi(n, c, ih, iw)], wv = w[wi(o, cg, kh, kw)], gv = gy[yi(n, o, oh, ow)];
      y.v[yi(n, o, oh, ow)] += xv * wv, y.mag[yi(n, o, oh, ow)] += std::abs(xv * wv);
      gx.v[xi(n, c, ih, iw)] += gv * wv, gx.mag[xi(n, c, ih, iw)] += std::abs(gv * wv);
      gw.v[wi(o, cg, kh, kw)] += gv * xv, gw.mag[wi(o, cg, kh, kw)] += std::abs(gv * xv);
    });
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t o = 0; o < s.O; ++o)
        for (int64_t p = 0; p < OH * OW; ++p) {
          const int64_t i = (n * s.O + o) * OH * OW + p;
          if (s.bias) y.v[i] += b[o], y.mag[i] += std::abs(b[o]);
          gb.v[o] += gy[i], gb.mag[o] += std::abs(gy[i]);
        }
  }
};

// |got - want| <= 3e-5 * (sum of |terms| + 1): a few hundred ulps of the largest partial sum,
// loose enough for Winograd's transforms, tight enough to catch any wrong or missing term.
void expect_close(const std::vector<float>& got, const Ref& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.v.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = 3e-5 * (want.mag[i] + 1.0);
    if (!(std::abs(got[i] - want.v[i]) <= tol) && bad++ < 5)
      ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", want " << want.v[i] << " (tol " << tol << ")";
  }
}

ConvShape shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t KH, int64_t KW, int64_t stride = 1,
                int64_t ph = 0, int64_t pw = 0, bool bias = true, int64_t dil = 1, int64_t groups = 1) {
  ConvShape s;
  s.N = N, s.C = C, s.H = H, s.W = W, s.O = O, s.KH = KH, s.KW = KW;
  s.sh = s.sw = stride, s.ph = ph, s.pw = pw, s.dh = s.dw = dil, s.groups = groups, s.bias = bias;
  return s;
}

std::vector<ConvShape> awkward_shapes() {
  return {
      shape(1, 1, 5, 7, 1, 3, 3),                      // one of everything
      shape(3, 3, 13, 11, 5, 3, 3, 1, 1, 1, false),    // odd sizes, padded, no bias
      shape(9, 17, 9, 10, 33, 3, 3, 1, 1, 1),          // two lane blocks, the second ragged
      shape(3, 17, 13, 13, 5, 3, 3),                   // cnn-like, unpadded
      shape(1, 3, 3, 3, 5, 3, 3),                      // a 1x1 output
      shape(3, 1, 1, 1, 5, 3, 3, 1, 1, 1),             // a 1x1 image, padded
      shape(3, 5, 6, 2, 33, 3, 3, 1, 2, 2),            // padding 2, narrow
      shape(2, 3, 8, 12, 4, 3, 3, 1, 3, 3, false),     // padding above the kernel's reach
      shape(3, 3, 11, 9, 5, 5, 5, 1, 2, 2),            // 5x5
      shape(3, 4, 9, 7, 6, 1, 1),                      // 1x1 kernel
      shape(3, 2, 20, 30, 9, 3, 2, 1, 1, 0),           // non-square kernel, rows wider than a vector
      shape(2, 1, 28, 28, 7, 3, 3),                    // the cnn's first layer, fewer filters
      shape(16, 8, 6, 6, 8, 3, 3, 1, 0, 0, false),     // full lane blocks
      shape(3, 3, 13, 12, 5, 3, 3, 2, 1, 1),           // stride 2 (im2col only)
      shape(2, 4, 7, 8, 6, 3, 3, 1, 1, 1, true, 1, 2),  // groups (im2col only)
      shape(2, 3, 9, 9, 4, 3, 3, 1, 1, 1, true, 2),    // dilation (im2col only)
  };
}

std::string describe(const ConvShape& s, ConvAlgo a, std::string_view isa) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s/%s N%lld C%lld %lldx%lld O%lld k%lldx%lld s%lld p%lldx%lld d%lld g%lld b%d",
                std::string(conv_algo_name(a)).c_str(), std::string(isa).c_str(), (long long)s.N, (long long)s.C,
                (long long)s.H, (long long)s.W, (long long)s.O, (long long)s.KH, (long long)s.KW, (long long)s.sh,
                (long long)s.ph, (long long)s.pw, (long long)s.dh, (long long)s.groups, s.bias ? 1 : 0);
  return buf;
}

// The builds to try: every ISA for the algorithms with per-ISA kernels (those this CPU can run).
std::vector<std::string> isas_for(ConvAlgo a) {
  if (a == ConvAlgo::im2col) return {""};
  std::vector<std::string> out;
  for (const char* isa : {"portable", "avx2", "avx512"}) {
    const bool ok = a == ConvAlgo::direct ? direct_kernels(isa) != nullptr : winograd_kernels(isa) != nullptr;
    if (ok) out.push_back(isa);
  }
  return out;
}

TEST(ConvAlgo, EveryAlgorithmAndIsaMatchesTheReference) {
  for (const ConvShape& s : awkward_shapes()) {
    const Problem p(s);
    for (ConvAlgo a : all_conv_algos()) {
      if (!conv_algo_applicable(a, s)) continue;
      for (const std::string& isa : isas_for(a)) {
        const std::string what = describe(s, a, isa);
        std::vector<float> y(p.y.v.size(), NAN), gx(p.gx.v.size(), NAN), gw(p.gw.v.size(), NAN), gb(s.O, NAN);
        conv_forward_f32(a, s, p.x.data(), p.w.data(), s.bias ? p.b.data() : nullptr, y.data(), isa);
        expect_close(y, p.y, what + " forward");
        conv_backward_data_f32(a, s, p.gy.data(), p.w.data(), gx.data(), isa);
        expect_close(gx, p.gx, what + " input gradient");
        conv_backward_weights_f32(a, s, p.x.data(), p.gy.data(), gw.data(), gb.data(), isa);
        expect_close(gw, p.gw, what + " weight gradient");
        expect_close(gb, p.gb, what + " bias gradient");
        conv_forward_f32(a, s, p.x.data(), p.w.data(), s.bias ? p.b.data() : nullptr, y.data(), isa, /*relu=*/true);
        Ref relu = p.y;
        for (double& v : relu.v) v = std::max(v, 0.0);
        expect_close(y, relu, what + " forward with fused ReLU");
        std::fill(gw.begin(), gw.end(), NAN);
        conv_backward_weights_f32(a, s, p.x.data(), p.gy.data(), gw.data(), nullptr, isa);  // no bias gradient
        expect_close(gw, p.gw, what + " weight gradient without bias");
      }
    }
  }
}

// The path conv2d takes: a forward that keeps its columns / transformed input, then one backward
// computing the gradients it is asked for, with any pair of data and weight algorithms.
TEST(ConvAlgo, CombinedBackwardWithSavedBuffers) {
  for (const ConvShape& s : {shape(9, 17, 9, 10, 33, 3, 3, 1, 1, 1), shape(3, 1, 12, 11, 5, 3, 3, 1, 0, 0),
                             shape(5, 8, 7, 7, 6, 3, 3, 1, 0, 0, false)}) {
    const Problem p(s);
    for (ConvAlgo fa : all_conv_algos())
      for (ConvAlgo da : all_conv_algos())
        for (ConvAlgo wa : all_conv_algos()) {
          if (!conv_algo_applicable(fa, s) || !conv_algo_applicable(da, s) || !conv_algo_applicable(wa, s)) continue;
          if (fa != wa && fa != ConvAlgo::im2col) continue;  // the forward matters only through what it keeps
          const std::string what = describe(s, fa, "") + " data " + std::string(conv_algo_name(da)) + " weights " +
                                   std::string(conv_algo_name(wa));
          std::vector<float> keep(static_cast<size_t>(conv_saved_elems(fa, wa, s)));
          std::vector<float> y(p.y.v.size()), gx(p.gx.v.size()), gw(p.gw.v.size()), gb(s.O);
          conv_forward_keep_f32(fa, s, p.x.data(), p.w.data(), s.bias ? p.b.data() : nullptr, y.data(),
                                keep.empty() ? nullptr : keep.data());
          expect_close(y, p.y, what + " forward");
          conv_backward_f32(da, wa, s, p.x.data(), p.w.data(), p.gy.data(), gx.data(), gw.data(), gb.data(),
                            keep.empty() ? nullptr : keep.data());
          expect_close(gx, p.gx, what + " input gradient");
          expect_close(gw, p.gw, what + " weight gradient");
          expect_close(gb, p.gb, what + " bias gradient");
          // Only some gradients wanted.
          std::vector<float> gb2(s.O);
          conv_backward_f32(da, wa, s, p.x.data(), p.w.data(), p.gy.data(), nullptr, nullptr, gb2.data(), nullptr);
          expect_close(gb2, p.gb, what + " bias gradient alone");
          std::vector<float> gx2(gx.size());
          conv_backward_f32(da, wa, s, p.x.data(), p.w.data(), p.gy.data(), gx2.data(), nullptr, nullptr, nullptr);
          expect_close(gx2, p.gx, what + " input gradient alone");
        }
  }
}

// Two runs of every algorithm give identical bits, at 1 and at 2 threads.
TEST(ConvAlgo, BitwiseReproducible) {
  const ConvShape s = shape(19, 12, 11, 13, 10, 3, 3, 1, 1, 1);
  const Problem p(s);
  const int saved_threads = get_num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (ConvAlgo a : all_conv_algos()) {
      if (!conv_algo_applicable(a, s)) continue;
      std::vector<float> out[2];
      for (auto& o : out) {
        std::vector<float> y(p.y.v.size()), gx(p.gx.v.size()), gw(p.gw.v.size()), gb(s.O);
        conv_forward_f32(a, s, p.x.data(), p.w.data(), p.b.data(), y.data());
        conv_backward_data_f32(a, s, p.gy.data(), p.w.data(), gx.data());
        conv_backward_weights_f32(a, s, p.x.data(), p.gy.data(), gw.data(), gb.data());
        o = y;
        o.insert(o.end(), gx.begin(), gx.end());
        o.insert(o.end(), gw.begin(), gw.end());
        o.insert(o.end(), gb.begin(), gb.end());
      }
      EXPECT_EQ(out[0], out[1]) << conv_algo_name(a) << " at " << threads << " threads";
    }
  }
  set_num_threads(saved_threads);
}

TEST(ConvAlgo, NamesHeuristicAndApplicability) {
  for (ConvAlgo a : all_conv_algos()) EXPECT_EQ(parse_conv_algo(conv_algo_name(a)), a);
  EXPECT_EQ(parse_conv_algo("winograd"), ConvAlgo::winograd4);
  EXPECT_FALSE(parse_conv_algo("fft").has_value());
  const ConvShape first = shape(128, 1, 28, 28, 32, 3, 3), second = shape(128, 32, 13, 13, 64, 3, 3);
  EXPECT_EQ(conv_algo_heuristic(first, ConvPass::forward), ConvAlgo::direct);
  EXPECT_EQ(conv_algo_heuristic(first, ConvPass::backward_weights), ConvAlgo::direct);
  EXPECT_TRUE(conv_algo_heuristic(second, ConvPass::forward) == ConvAlgo::winograd4);
  const ConvShape strided = shape(4, 8, 9, 9, 8, 3, 3, 2);
  EXPECT_FALSE(conv_algo_applicable(ConvAlgo::direct, strided));
  EXPECT_FALSE(conv_algo_applicable(ConvAlgo::winograd4, strided));
  EXPECT_EQ(conv_algo_heuristic(strided, ConvPass::forward), ConvAlgo::im2col);
  EXPECT_EQ(conv_tune_key(second, ConvPass::backward_data), "conv:bwd_data:n128c32h13w13o64k3x3s1x1p0x0d1x1g1b1");
}

// With tuning on, the first automatic call times the applicable algorithms and records the
// winner; the result is the winner's, and the cache entry is then used as is.
TEST(ConvAlgo, MeasuredSelectionIsCached) {
  const std::string path = ::testing::TempDir() + "kiln_conv_tune_test.txt";
  std::remove(path.c_str());
  setenv("KILN_TUNE_CACHE", path.c_str(), 1);
  tune_cache_clear_memory();
  const TuneMode saved_mode = tune_mode();
  set_tune_mode(TuneMode::on);
  const ConvShape s = shape(9, 6, 10, 9, 7, 3, 3, 1, 1, 1);
  const Problem p(s);
  std::vector<float> y(p.y.v.size()), gx(p.gx.v.size()), gw(p.gw.v.size()), gb(s.O);
  conv_forward_f32(ConvAlgo::automatic, s, p.x.data(), p.w.data(), p.b.data(), y.data());
  conv_backward_data_f32(ConvAlgo::automatic, s, p.gy.data(), p.w.data(), gx.data());
  conv_backward_weights_f32(ConvAlgo::automatic, s, p.x.data(), p.gy.data(), gw.data(), gb.data());
  expect_close(y, p.y, "tuned forward");
  expect_close(gx, p.gx, "tuned input gradient");
  expect_close(gw, p.gw, "tuned weight gradient");
  expect_close(gb, p.gb, "tuned bias gradient");
  for (ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_weights}) {
    auto stored = tune_cache_get(conv_tune_key(s, pass));
    ASSERT_TRUE(stored.has_value()) << conv_pass_name(pass);
    auto algo = parse_conv_algo(*stored);
    ASSERT_TRUE(algo.has_value()) << *stored;
    EXPECT_TRUE(conv_algo_applicable(*algo, s)) << *stored;
    EXPECT_EQ(conv_algo_resolve(ConvAlgo::automatic, s, pass), *algo);
  }
  // A stored choice is honoured without measuring again, in cached mode too.
  tune_cache_put(conv_tune_key(s, ConvPass::forward), "im2col");
  set_tune_mode(TuneMode::cached);
  EXPECT_EQ(conv_algo_resolve(ConvAlgo::automatic, s, ConvPass::forward), ConvAlgo::im2col);
  set_tune_mode(saved_mode);
  unsetenv("KILN_TUNE_CACHE");
  tune_cache_clear_memory();
  std::remove(path.c_str());
}

// The op itself with tuning on: conv2d measures each pass on first use (forward in the forward,
// the gradients in backward), records the winners, and its results match the reference.
TEST(ConvAlgo, Conv2dOpTunesEachPass) {
  const std::string path = ::testing::TempDir() + "kiln_conv_op_tune_test.txt";
  std::remove(path.c_str());
  setenv("KILN_TUNE_CACHE", path.c_str(), 1);
  tune_cache_clear_memory();
  const TuneMode saved_mode = tune_mode();
  set_tune_mode(TuneMode::on);
  const ConvShape s = shape(10, 5, 9, 8, 6, 3, 3, 1, 1, 1);
  const Problem p(s);
  auto tensor = [](const std::vector<float>& v, Shape sh) {
    Tensor t = Tensor::empty(sh, DType::f32);
    std::copy(v.begin(), v.end(), t.data<float>());
    return t;
  };
  Tensor x = tensor(p.x, {s.N, s.C, s.H, s.W}), w = tensor(p.w, {s.O, s.C, s.KH, s.KW}), b = tensor(p.b, {s.O});
  for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
  Conv2dOptions opt;
  opt.padding = {1, 1};
  Tensor y = conv2d(x, w, b, opt);
  autograd::backward({y}, {tensor(p.gy, y.shape())});
  expect_close(y.to_vector<float>(), p.y, "op forward");
  expect_close(x.grad().to_vector<float>(), p.gx, "op input gradient");
  expect_close(w.grad().to_vector<float>(), p.gw, "op weight gradient");
  expect_close(b.grad().to_vector<float>(), p.gb, "op bias gradient");
  for (ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_weights})
    EXPECT_TRUE(tune_cache_get(conv_tune_key(s, pass)).has_value()) << conv_pass_name(pass);
  set_tune_mode(saved_mode);
  unsetenv("KILN_TUNE_CACHE");
  tune_cache_clear_memory();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kiln::ops::cpu
