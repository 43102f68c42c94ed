// Tests for the forward-only nn ops of imported graphs (ops/inference_nn.h): conv_transpose2d,
// instance_norm, resize and pad_mode. Op-harness tables check f64/f32/strided forward against
// plain loops written from the ONNX definitions; the ONNX spec's and backend tests' own examples
// are checked value by value; integer dtypes, names and bad inputs are tested separately.
#include <cmath>

#include "ops/op_harness.h"
#include "kiln/ops/inference_nn.h"

using namespace kiln;
using namespace kiln::optest;

namespace {

// ---------------------------------------------------------------- plain-loop references

// The definition of a transposed convolution: every input element scatters x * w into the
// output at oh = ih*sh - pad_begin + kh*dh (dropped when outside), plus the bias everywhere.
RefTensor ref_conv_transpose(const RefTensor& x, const RefTensor& w, const RefTensor* b,
                             const ops::ConvTranspose2dOptions& o) {
  const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const int64_t Og = w.shape[1], KH = w.shape[2], KW = w.shape[3], G = o.groups, O = Og * G, Cg = C / G;
  const int64_t OH = o.stride[0] * (H - 1) + o.output_padding[0] + o.dilation[0] * (KH - 1) + 1 - o.pads[0] - o.pads[2];
  const int64_t OW = o.stride[1] * (W - 1) + o.output_padding[1] + o.dilation[1] * (KW - 1) + 1 - o.pads[1] - o.pads[3];
  RefTensor out({N, O, OH, OW});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < O; ++oc)
      for (int64_t i = 0; i < OH * OW; ++i) out.v[(n * O + oc) * OH * OW + i] = b ? b->v[oc] : 0.0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t ih = 0; ih < H; ++ih)
        for (int64_t iw = 0; iw < W; ++iw)
          for (int64_t ol = 0; ol < Og; ++ol)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t oh = ih * o.stride[0] - o.pads[0] + kh * o.dilation[0];
                const int64_t ow = iw * o.stride[1] - o.pads[1] + kw * o.dilation[1];
                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                const int64_t oc = (c / Cg) * Og + ol;
                out.v[((n * O + oc) * OH + oh) * OW + ow] +=
                    x.v[((n * C + c) * H + ih) * W + iw] * w.v[((c * Og + ol) * KH + kh) * KW + kw];
              }
  return out;
}

RefTensor ref_instance_norm(const RefTensor& x, const RefTensor& s, const RefTensor& b, double eps) {
  const int64_t N = x.shape[0], C = x.shape[1], S = x.numel() / (N * C);
  RefTensor out(x.shape);
  for (int64_t p = 0; p < N * C; ++p) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < S; ++i) mean += x.v[p * S + i] / S;
    for (int64_t i = 0; i < S; ++i) var += (x.v[p * S + i] - mean) * (x.v[p * S + i] - mean) / S;
    for (int64_t i = 0; i < S; ++i)
      out.v[p * S + i] = s.v[p % C] * (x.v[p * S + i] - mean) / std::sqrt(var + eps) + b.v[p % C];
  }
  return out;
}

// Resize from sizes (scale = out / in on each dim), straight from the ONNX formulas: the source
// coordinate per dim, its taps (nearest: one; linear: two; cubic: four with the reference
// implementation's coefficients), then the sum over every combination of taps across dims.
RefTensor ref_resize(const RefTensor& x, const Shape& sizes, const ops::ResizeOptions& o) {
  const int64_t r = x.dim();
  RefTensor out(sizes);
  for (int64_t i = 0; i < out.numel(); ++i) {
    std::vector<int64_t> oi = unravel(i, sizes);
    std::vector<std::vector<std::pair<int64_t, double>>> taps(r);  // per dim: (index, weight)
    for (int64_t d = 0; d < r; ++d) {
      const int64_t in = x.shape[d];
      const double n = static_cast<double>(in), m = static_cast<double>(sizes[d]), s = m / n;
      const double xo = static_cast<double>(oi[d]);
      double src = 0;
      switch (o.coord) {
        case ops::ResizeCoord::half_pixel: src = (xo + 0.5) / s - 0.5; break;
        case ops::ResizeCoord::pytorch_half_pixel: src = m > 1 ? (xo + 0.5) / s - 0.5 : 0.0; break;
        case ops::ResizeCoord::align_corners: src = m == 1 ? 0.0 : xo * (n - 1) / (m - 1); break;
        case ops::ResizeCoord::asymmetric: src = xo / s; break;
        case ops::ResizeCoord::tf_half_pixel_for_nn: src = (xo + 0.5) / s; break;
        case ops::ResizeCoord::tf_crop_and_resize:  // no rows here: tests/graph/vision_ops_test.cpp
          ADD_FAILURE() << "ref_resize does not extrapolate";
          break;
      }
      auto clampi = [&](double v) { return std::min<int64_t>(std::max<int64_t>(static_cast<int64_t>(v), 0), in - 1); };
      const double f = std::floor(src), t = src - f;
      if (o.mode == ops::ResizeMode::nearest) {
        double pick = 0;
        switch (o.nearest) {
          case ops::ResizeNearest::round_prefer_floor: pick = t <= 0.5 ? f : std::ceil(src); break;
          case ops::ResizeNearest::round_prefer_ceil: pick = t < 0.5 ? f : std::ceil(src); break;
          case ops::ResizeNearest::floor: pick = f; break;
          case ops::ResizeNearest::ceil: pick = std::ceil(src); break;
        }
        taps[d] = {{clampi(pick), 1.0}};
        continue;
      }
      std::vector<std::pair<int64_t, double>> raw;
      if (o.mode == ops::ResizeMode::linear) {
        raw = {{static_cast<int64_t>(f), 1 - t}, {static_cast<int64_t>(f) + 1, t}};
      } else {
        const double A = o.cubic_coeff_a;
        const double c[4] = {((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A,
                             ((A + 2) * t - (A + 3)) * t * t + 1,
                             ((A + 2) * (1 - t) - (A + 3)) * (1 - t) * (1 - t) + 1,
                             ((A * ((1 - t) + 1) - 5 * A) * ((1 - t) + 1) + 8 * A) * ((1 - t) + 1) - 4 * A};
        for (int k = 0; k < 4; ++k) raw.push_back({static_cast<int64_t>(f) - 1 + k, c[k]});
      }
      if (o.exclude_outside) {
        double sum = 0;
        for (auto& [j, w] : raw) sum += (j < 0 || j >= in) ? (w = 0) : w;
        for (auto& [j, w] : raw) w /= sum;
      }
      for (auto& [j, w] : raw) taps[d].push_back({clampi(static_cast<double>(j)), w});
    }
    double acc = 0;
    std::vector<size_t> pick(r, 0);
    for (;;) {
      double wgt = 1;
      std::vector<int64_t> idx(r);
      for (int64_t d = 0; d < r; ++d) {
        wgt *= taps[d][pick[d]].second;
        idx[d] = taps[d][pick[d]].first;
      }
      acc += wgt * x.at(idx);
      int64_t d = r - 1;
      for (; d >= 0; --d) {
        if (++pick[d] < taps[d].size()) break;
        pick[d] = 0;
      }
      if (d < 0) break;
    }
    out.v[i] = acc;
  }
  return out;
}

// numpy.pad semantics: reflect bounces off the edges (repeatedly), edge clamps.
RefTensor ref_pad(const RefTensor& x, const std::vector<int64_t>& pads, double value, ops::PadMode mode) {
  const int64_t r = x.dim();
  Shape os(r);
  for (int64_t d = 0; d < r; ++d) os[d] = x.shape[d] + pads[d] + pads[d + r];
  RefTensor out(os);
  for (int64_t i = 0; i < out.numel(); ++i) {
    std::vector<int64_t> idx = unravel(i, os);
    bool fill = false;
    for (int64_t d = 0; d < r; ++d) {
      int64_t j = idx[d] - pads[d];
      const int64_t n = x.shape[d];
      if (j >= 0 && j < n) {
        idx[d] = j;
        continue;
      }
      if (mode == ops::PadMode::constant) fill = true;
      else if (mode == ops::PadMode::edge || n == 1) j = std::min(std::max<int64_t>(j, 0), n - 1);
      else
        while (j < 0 || j >= n) j = j < 0 ? -j : 2 * (n - 1) - j;
      idx[d] = j;
    }
    out.v[i] = fill ? value : x.at(idx);
  }
  return out;
}

// ---------------------------------------------------------------- tables

ops::ConvTranspose2dOptions ct_opt(std::array<int64_t, 2> s, std::array<int64_t, 4> p, std::array<int64_t, 2> d,
                                   std::array<int64_t, 2> op, int64_t g) {
  ops::ConvTranspose2dOptions o;
  o.stride = s, o.pads = p, o.dilation = d, o.output_padding = op, o.groups = g;
  return o;
}

OpCase conv_transpose_row(std::string name, Shape xs, Shape ws, bool bias, ops::ConvTranspose2dOptions o) {
  const int64_t O = ws[1] * o.groups;
  return OpCase(
             std::move(name),
             [=](Generator& g) {
               Inputs in{rnd(g, xs), rnd(g, ws)};
               if (bias) in.push_back(rnd(g, {O}));
               return in;
             },
             [=](const Inputs& in) { return ops::conv_transpose2d(in[0], in[1], bias ? in[2] : Tensor(), o); },
             [=](const std::vector<RefTensor>& r) { return ref_conv_transpose(r[0], r[1], bias ? &r[2] : nullptr, o); })
      .no_gradient();
}

std::vector<OpCase> conv_transpose_rows() {
  auto f64 = [](Shape s) { return Tensor::zeros(s, DType::f64); };
  std::vector<OpCase> rows{
      conv_transpose_row("plain", {2, 3, 4, 5}, {3, 2, 3, 3}, true, {}),
      conv_transpose_row("strided_asym_pads", {1, 2, 4, 3}, {2, 3, 3, 2}, true,
                         ct_opt({2, 3}, {1, 0, 0, 2}, {1, 1}, {1, 2}, 1)),
      conv_transpose_row("dilated_no_bias", {2, 2, 3, 3}, {2, 2, 2, 3}, false, ct_opt({1, 2}, {0, 1, 1, 0}, {2, 2}, {0, 1}, 1)),
      conv_transpose_row("groups", {1, 4, 3, 3}, {4, 3, 2, 2}, true, ct_opt({2, 2}, {0, 0, 0, 0}, {1, 1}, {0, 0}, 2)),
      conv_transpose_row("depthwise", {2, 3, 4, 4}, {3, 1, 3, 3}, true, ct_opt({2, 1}, {1, 1, 1, 1}, {1, 1}, {1, 0}, 3)),
      conv_transpose_row("negative_pads_extend", {1, 2, 3, 3}, {2, 2, 3, 3}, true,
                         ct_opt({3, 2}, {0, -1, -1, 0}, {1, 1}, {0, 0}, 1)),
  };
  rows[0]
      .bad("conv_transpose2d", [=] { ops::conv_transpose2d(f64({2, 3, 4}), f64({3, 2, 3, 3})); })
      .bad("conv_transpose2d", [=] { ops::conv_transpose2d(f64({1, 3, 4, 4}), f64({2, 2, 3, 3})); })
      .bad("conv_transpose2d", [=] { ops::conv_transpose2d(f64({1, 3, 4, 4}), Tensor::zeros({3, 2, 3, 3})); })
      .bad("conv_transpose2d", [=] { ops::conv_transpose2d(f64({1, 3, 4, 4}), f64({3, 2, 3, 3}), f64({3})); })
      .bad("conv_transpose2d",
           [=] { ops::conv_transpose2d(f64({1, 3, 1, 1}), f64({3, 2, 1, 1}), Tensor(), ct_opt({1, 1}, {1, 0, 0, 0}, {1, 1}, {0, 0}, 1)); })
      .bad("conv_transpose2d",
           [=] { ops::conv_transpose2d(f64({1, 3, 4, 4}), f64({3, 2, 3, 3}), Tensor(), ct_opt({0, 1}, {}, {1, 1}, {0, 0}, 1)); })
      .bad("groups", [=] {
        ops::conv_transpose2d(f64({1, 3, 4, 4}), f64({3, 2, 3, 3}), Tensor(), ct_opt({1, 1}, {}, {1, 1}, {0, 0}, 2));
      });
  return rows;
}
KILN_OP_TABLE(ConvTransposeOps, conv_transpose_rows());

OpCase instance_norm_row(std::string name, Shape xs, double eps) {
  const int64_t C = xs[1];
  return OpCase(
             std::move(name), [=](Generator& g) { return Inputs{rnd(g, xs, -2, 3), rnd(g, {C}), rnd(g, {C})}; },
             [=](const Inputs& in) { return ops::instance_norm(in[0], in[1], in[2], eps); },
             [=](const std::vector<RefTensor>& r) { return ref_instance_norm(r[0], r[1], r[2], eps); })
      .no_gradient()
      .tol32(1e-5, 1e-4);
}

std::vector<OpCase> instance_norm_rows() {
  auto f64 = [](Shape s) { return Tensor::zeros(s, DType::f64); };
  std::vector<OpCase> rows{instance_norm_row("image", {2, 3, 4, 5}, 1e-5), instance_norm_row("seq", {2, 3, 7}, 1e-3),
                           instance_norm_row("volume", {1, 2, 2, 3, 2}, 1e-5)};
  rows[0]
      .bad("instance_norm", [=] { ops::instance_norm(f64({2, 3}), f64({3}), f64({3})); })
      .bad("instance_norm", [=] { ops::instance_norm(f64({2, 3, 4}), f64({2}), f64({3})); })
      .bad("instance_norm", [=] { ops::instance_norm(f64({2, 3, 4}), Tensor::zeros({3}), f64({3})); })
      .bad("instance_norm", [=] { ops::instance_norm(Tensor::zeros({2, 3, 4}, DType::i64), f64({3}), f64({3})); });
  return rows;
}
KILN_OP_TABLE(InstanceNormOps, instance_norm_rows());

OpCase resize_row(std::string name, Shape xs, Shape sizes, ops::ResizeMode mode, ops::ResizeCoord coord,
                  ops::ResizeNearest nearest = ops::ResizeNearest::round_prefer_floor, double cubic_a = -0.75,
                  bool exclude_outside = false) {
  ops::ResizeOptions o{mode, coord, nearest, cubic_a, exclude_outside};
  return OpCase(
             std::move(name), [=](Generator& g) { return Inputs{rnd(g, xs)}; },
             [=](const Inputs& in) { return ops::resize(in[0], {}, sizes, o); },
             [=](const std::vector<RefTensor>& r) { return ref_resize(r[0], sizes, o); })
      .no_gradient();
}

std::vector<OpCase> resize_rows() {
  using M = ops::ResizeMode;
  using C = ops::ResizeCoord;
  using R = ops::ResizeNearest;
  auto f64 = [](Shape s) { return Tensor::zeros(s, DType::f64); };
  std::vector<OpCase> rows{
      resize_row("nearest_up_half_pixel", {1, 2, 3, 4}, {1, 2, 7, 9}, M::nearest, C::half_pixel),
      resize_row("nearest_down_asym_ceil", {2, 1, 5, 7}, {2, 1, 3, 2}, M::nearest, C::asymmetric, R::ceil),
      resize_row("nearest_align_floor", {1, 2, 3, 4}, {1, 2, 8, 5}, M::nearest, C::align_corners, R::floor),
      resize_row("nearest_prefer_ceil", {1, 1, 4, 4}, {1, 1, 6, 10}, M::nearest, C::pytorch_half_pixel, R::round_prefer_ceil),
      resize_row("nearest_tf_half_pixel", {1, 1, 4, 4}, {1, 1, 3, 3}, M::nearest, C::tf_half_pixel_for_nn),
      resize_row("nearest_5d_all_dims", {2, 3, 2, 3, 2}, {3, 2, 4, 2, 5}, M::nearest, C::half_pixel),
      resize_row("linear_up_half_pixel", {1, 2, 3, 4}, {1, 2, 7, 9}, M::linear, C::half_pixel),
      resize_row("linear_down_half_pixel", {2, 2, 7, 5}, {2, 2, 3, 2}, M::linear, C::half_pixel),
      resize_row("linear_pytorch_to_one", {1, 2, 4, 5}, {1, 2, 1, 3}, M::linear, C::pytorch_half_pixel),
      resize_row("linear_align_corners", {1, 2, 3, 4}, {1, 2, 5, 7}, M::linear, C::align_corners),
      resize_row("linear_asymmetric", {1, 1, 3, 4}, {1, 1, 5, 3}, M::linear, C::asymmetric),
      resize_row("linear_3d_all_dims", {3, 4, 5}, {5, 2, 8}, M::linear, C::half_pixel),
      resize_row("linear_1d", {6}, {10}, M::linear, C::align_corners),
      resize_row("linear_exclude_outside", {1, 1, 3, 4}, {1, 1, 7, 9}, M::linear, C::half_pixel, R::floor, -0.75, true),
      resize_row("cubic_up_half_pixel", {1, 2, 4, 5}, {1, 2, 9, 7}, M::cubic, C::half_pixel),
      resize_row("cubic_down_align_corners", {2, 1, 9, 8}, {2, 1, 4, 3}, M::cubic, C::align_corners),
      resize_row("cubic_asymmetric_a_half", {1, 1, 5, 6}, {1, 1, 8, 9}, M::cubic, C::asymmetric, R::floor, -0.5),
      resize_row("cubic_exclude_outside", {1, 2, 4, 4}, {1, 2, 7, 3}, M::cubic, C::half_pixel, R::floor, -0.5, true),
      resize_row("cubic_3d", {3, 4, 5}, {4, 6, 3}, M::cubic, C::pytorch_half_pixel),
  };
  rows[0]
      .bad("resize", [=] { ops::resize(f64({1, 2, 3}), {}, {1, 2}); })
      .bad("resize", [=] { ops::resize(f64({1, 2}), {1.0, 2.0}, {1, 4}); })
      .bad("resize", [=] { ops::resize(f64({1, 2}), {}, {}); })
      .bad("resize", [=] { ops::resize(f64({1, 2}), {1.0, -2.0}, {}); })
      .bad("resize", [=] { ops::resize(Tensor::zeros({1, 2}, DType::i64), {1.0, 2.0}, {}, {ops::ResizeMode::linear}); });
  return rows;
}
KILN_OP_TABLE(ResizeOps, resize_rows());

OpCase pad_row(std::string name, Shape xs, std::vector<int64_t> pads, ops::PadMode mode, double value = 0.0) {
  return OpCase(
             std::move(name), [=](Generator& g) { return Inputs{rnd(g, xs)}; },
             [=](const Inputs& in) { return ops::pad_mode(in[0], pads, value, mode); },
             [=](const std::vector<RefTensor>& r) { return ref_pad(r[0], pads, value, mode); })
      .no_gradient();
}

std::vector<OpCase> pad_rows() {
  using P = ops::PadMode;
  auto f64 = [](Shape s) { return Tensor::zeros(s, DType::f64); };
  std::vector<OpCase> rows{
      pad_row("constant", {2, 3, 4}, {0, 1, 2, 1, 0, 3}, P::constant, 1.5),
      pad_row("constant_crop", {2, 3, 4}, {1, -1, 2, -1, 2, -3}, P::constant, -2.0),
      pad_row("reflect", {2, 3, 4}, {1, 2, 3, 1, 2, 3}, P::reflect),
      pad_row("reflect_beyond_size", {2, 3, 4}, {0, 5, 0, 0, 4, 7}, P::reflect),
      pad_row("reflect_size_one", {2, 1, 4}, {0, 2, 1, 0, 3, 1}, P::reflect),
      pad_row("edge", {2, 3, 4}, {2, 0, 3, 1, 4, 0}, P::edge),
      pad_row("edge_crop", {3, 5}, {-1, 2, 1, -3}, P::edge),
  };
  rows[0]
      .bad("pad_mode", [=] { ops::pad_mode(f64({2, 3}), {1, 1}); })
      .bad("pad_mode", [=] { ops::pad_mode(f64({2, 3}), {0, -2, 0, -2}); })
      .bad("pad_mode", [=] { ops::pad_mode(f64({2, 0}), {0, 1, 0, 0}, 0.0, ops::PadMode::reflect); })
      .bad("pad_mode", [=] { ops::pad_mode(f64({2, 0}), {0, 1, 0, 0}, 0.0, ops::PadMode::edge); });
  return rows;
}
KILN_OP_TABLE(PadModeOps, pad_rows());

// ---------------------------------------------------------------- ONNX examples

void expect_values(const Tensor& t, const Shape& shape, const std::vector<double>& want, double tol = 1e-5) {
  ASSERT_EQ(t.shape(), shape);
  std::vector<double> got = t.to_vector<double>();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

Tensor f32(const std::vector<float>& v, const Shape& s) { return Tensor::from_vector<float>(v, s); }

TEST(ConvTranspose2d, OnnxExample) {  // backend test test_convtranspose: x = 0..8, w = ones
  Tensor x = f32({0, 1, 2, 3, 4, 5, 6, 7, 8}, {1, 1, 3, 3});
  Tensor w = Tensor::ones({1, 2, 3, 3});
  const std::vector<double> plane = {0, 1, 3,  3,  2,  3, 8,  15, 12, 7,  9,  21, 36,
                                     27, 15, 9, 20, 33, 24, 13, 6,  13, 21, 15, 8};
  std::vector<double> want = plane;
  want.insert(want.end(), plane.begin(), plane.end());
  expect_values(ops::conv_transpose2d(x, w), {1, 2, 5, 5}, want);
}

TEST(ConvTranspose2d, OutputPaddingAndNegativePadsHoldTheBias) {
  // 1x1 input, 1x1 kernel, stride 2: only (0, 0) is covered; the rest is the bias.
  Tensor x = f32({3}, {1, 1, 1, 1}), w = f32({2}, {1, 1, 1, 1}), b = f32({0.5f}, {1});
  ops::ConvTranspose2dOptions o;
  o.output_padding = {1, 0};
  o.stride = {2, 2};
  o.pads = {0, -1, 0, -1};  // one extra column on each side
  expect_values(ops::conv_transpose2d(x, w, b, o), {1, 1, 2, 3}, {0.5, 6.5, 0.5, 0.5, 0.5, 0.5});
}

TEST(ConvTranspose2d, ModelSizeF32MatchesReference) {
  Generator g(7);
  Tensor x = uniform({2, 16, 9, 11}, -1, 1, g, DType::f64), w = uniform({16, 4, 3, 3}, -1, 1, g, DType::f64);
  Tensor b = uniform({8}, -1, 1, g, DType::f64);
  ops::ConvTranspose2dOptions o = ct_opt({2, 2}, {1, 1, 0, 1}, {1, 1}, {1, 1}, 2);
  const RefTensor rb = to_ref(b);
  RefTensor want = ref_conv_transpose(to_ref(x), to_ref(w), &rb, o);
  Tensor got = ops::conv_transpose2d(to_dtype_raw(x, DType::f32), to_dtype_raw(w, DType::f32),
                                     to_dtype_raw(b, DType::f32), o);
  expect_matches(got, want, 1e-4, 1e-4, "conv_transpose2d f32 model size");
}

TEST(ConvTranspose2d, RecordsNoAutograd) {
  Tensor x = Tensor::ones({1, 1, 2, 2}, DType::f64).set_requires_grad(true);
  EXPECT_FALSE(ops::conv_transpose2d(x, Tensor::ones({1, 1, 2, 2}, DType::f64)).requires_grad());
}

TEST(InstanceNorm, OnnxExample) {  // test_instancenorm_example
  Tensor x = f32({-1, 0, 1, 2, 3, 4}, {1, 2, 1, 3});
  Tensor y = ops::instance_norm(x, f32({1, 1.5f}, {2}), f32({0, 1}, {2}), 1e-5);
  const double s = 1 / std::sqrt(2.0 / 3.0 + 1e-5), a = 1.5 * s;  // (x - mean) / std, scaled
  expect_values(y, {1, 2, 1, 3}, {-s, 0, s, 1 - a, 1, 1 + a});
}

TEST(Resize, OnnxExamples) {
  using M = ops::ResizeMode;
  using C = ops::ResizeCoord;
  Tensor x22 = f32({1, 2, 3, 4}, {1, 1, 2, 2});
  Tensor x24 = f32({1, 2, 3, 4, 5, 6, 7, 8}, {1, 1, 2, 4});
  // test_resize_upsample_scales_linear (half_pixel)
  expect_values(ops::resize(x22, {1, 1, 2, 2}, {}, {M::linear, C::half_pixel}), {1, 1, 4, 4},
                {1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4});
  // test_resize_upsample_scales_linear_align_corners
  expect_values(ops::resize(x22, {1, 1, 2, 2}, {}, {M::linear, C::align_corners}), {1, 1, 4, 4},
                {1, 1.333333, 1.666667, 2, 1.666667, 2, 2.333333, 2.666667, 2.333333, 2.666667, 3, 3.333333, 3,
                 3.333333, 3.666667, 4});
  // test_resize_downsample_scales_linear: scales 0.6 (the scale, not out/in, enters the transform)
  expect_values(ops::resize(x24, {1, 1, 0.6f, 0.6f}, {}, {M::linear, C::half_pixel}), {1, 1, 1, 2}, {2.6666667, 4.3333335});
  // test_resize_downsample_scales_linear_align_corners: divides by scale * in - 1 = 1.4
  expect_values(ops::resize(x24, {1, 1, 0.6f, 0.6f}, {}, {M::linear, C::align_corners}), {1, 1, 1, 2}, {1, 3.142857});
  // test_resize_downsample_scales_nearest and test_resize_upsample_scales_nearest
  expect_values(ops::resize(x24, {1, 1, 0.6f, 0.6f}, {}), {1, 1, 1, 2}, {1, 3});
  expect_values(ops::resize(x22, {1, 1, 2, 3}, {}), {1, 1, 4, 6},
                {1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4});
}

TEST(Resize, NearestWorksForIntegerTypesAndNeverAliases) {
  Tensor x = Tensor::from_vector<uint8_t>({10, 20, 30, 40}, {2, 2});
  Tensor y = ops::resize(x, {}, {2, 4});
  EXPECT_EQ(y.dtype(), DType::u8);
  expect_values(y, {2, 4}, {10, 10, 20, 20, 30, 30, 40, 40});
  Tensor z = Tensor::ones({2, 3}, DType::f32);
  Tensor same = ops::resize(z, {1.0, 1.0}, {}, {ops::ResizeMode::linear});
  EXPECT_NE(same.storage(), z.storage());
  expect_values(same, {2, 3}, {1, 1, 1, 1, 1, 1});
}

TEST(Resize, Names) {
  EXPECT_EQ(ops::resize_mode_from_name("linear"), ops::ResizeMode::linear);
  EXPECT_EQ(ops::resize_coord_from_name("pytorch_half_pixel"), ops::ResizeCoord::pytorch_half_pixel);
  EXPECT_EQ(ops::resize_nearest_from_name("ceil"), ops::ResizeNearest::ceil);
  EXPECT_EQ(ops::resize_mode_from_name("cubic"), ops::ResizeMode::cubic);
  EXPECT_THROW(ops::resize_mode_from_name("bilinear"), ValueError);
  EXPECT_EQ(ops::resize_coord_from_name("tf_crop_and_resize"), ops::ResizeCoord::tf_crop_and_resize);
  EXPECT_THROW(ops::resize_coord_from_name("half"), ValueError);
  EXPECT_THROW(ops::resize_nearest_from_name("round"), ValueError);
}

TEST(PadMode, OnnxSpecExamples) {
  Tensor x = f32({1.0f, 1.2f, 2.3f, 3.4f, 4.5f, 5.7f}, {3, 2});
  const std::vector<int64_t> pads{0, 2, 0, 0};
  expect_values(ops::pad_mode(x, pads, 0.0, ops::PadMode::constant), {3, 4},
                {0, 0, 1.0, 1.2, 0, 0, 2.3, 3.4, 0, 0, 4.5, 5.7});
  expect_values(ops::pad_mode(x, pads, 0.0, ops::PadMode::reflect), {3, 4},
                {1.0, 1.2, 1.0, 1.2, 2.3, 3.4, 2.3, 3.4, 4.5, 5.7, 4.5, 5.7});
  expect_values(ops::pad_mode(x, pads, 0.0, ops::PadMode::edge), {3, 4},
                {1.0, 1.0, 1.0, 1.2, 2.3, 2.3, 2.3, 3.4, 4.5, 4.5, 4.5, 5.7});
}

TEST(PadMode, ReflectBeyondTheSizeAsNumpy) {  // np.pad([1, 2, 3], (4, 2), 'reflect')
  Tensor x = Tensor::from_vector<int64_t>({1, 2, 3});
  Tensor y = ops::pad_mode(x, {4, 2}, 0.0, ops::PadMode::reflect);
  EXPECT_EQ(y.dtype(), DType::i64);
  expect_values(y, {9}, {1, 2, 3, 2, 1, 2, 3, 2, 1});
}

TEST(PadMode, IntegerAndBoolDtypes) {
  Tensor x = Tensor::from_vector<uint8_t>({1, 2, 3, 4}, {2, 2});
  Tensor y = ops::pad_mode(x, {1, 0, 0, 1}, 9.0);
  EXPECT_EQ(y.dtype(), DType::u8);
  expect_values(y, {3, 3}, {9, 9, 9, 1, 2, 9, 3, 4, 9});
  Tensor b = Tensor::from_vector<bool>({true, false}, {2});
  expect_values(ops::pad_mode(b, {1, 1}, 0.0, ops::PadMode::edge), {4}, {1, 1, 0, 0});
  EXPECT_THROW(ops::pad_mode_from_name("wrap"), NotImplementedError);
  EXPECT_THROW(ops::pad_mode_from_name("mirror"), ValueError);
}

}  // namespace
