// Tests for the nn ops (ops/nn_ops.h): one op-harness table per family (forward vs a plain-loop
// reference, finite-difference gradients, strided inputs, bad inputs), plus hand-computed values,
// the f32 fast paths at model-like sizes against naive loops (forward and backward), running
// statistics, dropout masks and determinism.
#include <cmath>

#include "kiln/autograd/engine.h"
#include "kiln/ops/cpu/conv_kernels.h"
#include "ops/op_harness.h"

using namespace kiln;
using namespace kiln::optest;

namespace {

// ---------------------------------------------------------------- plain-loop references

struct ConvRefOpt {
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
};

ops::Conv2dOptions to_opt(const ConvRefOpt& o) {
  ops::Conv2dOptions r;
  r.stride = {o.sh, o.sw};
  r.padding = {o.ph, o.pw};
  r.dilation = {o.dh, o.dw};
  r.groups = o.groups;
  return r;
}

// x (N, C, H, W), w (O, C/g, KH, KW), b (O) or empty. Flat indexing: these loops also serve as
// the oracle at model sizes.
RefTensor ref_conv(const RefTensor& x, const RefTensor& w, const RefTensor* b, const ConvRefOpt& o) {
  int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  int64_t O = w.shape[0], Cg = w.shape[1], KH = w.shape[2], KW = w.shape[3], Og = O / o.groups;
  int64_t OH = (H + 2 * o.ph - o.dh * (KH - 1) - 1) / o.sh + 1, OW = (W + 2 * o.pw - o.dw * (KW - 1) - 1) / o.sw + 1;
  RefTensor out({N, O, OH, OW});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < O; ++oc)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double s = b ? b->v[oc] : 0.0;
          for (int64_t ci = 0; ci < Cg; ++ci)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                int64_t ih = oh * o.sh - o.ph + kh * o.dh, iw = ow * o.sw - o.pw + kw * o.dw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                int64_t c = (oc / Og) * Cg + ci;
                s += x.v[((n * C + c) * H + ih) * W + iw] * w.v[((oc * Cg + ci) * KH + kh) * KW + kw];
              }
          out.v[((n * O + oc) * OH + oh) * OW + ow] = s;
        }
  return out;
}

// The adjoint of ref_conv for an output gradient g: dx, dw, db.
void ref_conv_backward(const RefTensor& x, const RefTensor& w, const RefTensor& g, const ConvRefOpt& o, RefTensor& dx,
                       RefTensor& dw, RefTensor& db) {
  int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  int64_t O = w.shape[0], Cg = w.shape[1], KH = w.shape[2], KW = w.shape[3], Og = O / o.groups;
  int64_t OH = g.shape[2], OW = g.shape[3];
  dx = RefTensor(x.shape), dw = RefTensor(w.shape), db = RefTensor({O});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < O; ++oc)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double gv = g.v[((n * O + oc) * OH + oh) * OW + ow];
          db.v[oc] += gv;
          for (int64_t ci = 0; ci < Cg; ++ci)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                int64_t ih = oh * o.sh - o.ph + kh * o.dh, iw = ow * o.sw - o.pw + kw * o.dw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                int64_t xi = ((n * C + (oc / Og) * Cg + ci) * H + ih) * W + iw;
                int64_t wi = ((oc * Cg + ci) * KH + kh) * KW + kw;
                dx.v[xi] += gv * w.v[wi];
                dw.v[wi] += gv * x.v[xi];
              }
        }
}

enum class PoolKind { max, avg };

// Pools the last two dims; padding is -inf for max and counted as zeros for avg.
RefTensor ref_pool(const RefTensor& x, PoolKind kind, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                   int64_t pw) {
  int64_t nd = x.dim(), H = x.shape[nd - 2], W = x.shape[nd - 1];
  int64_t OH = (H + 2 * ph - kh) / sh + 1, OW = (W + 2 * pw - kw) / sw + 1;
  int64_t planes = x.numel() / (H * W);
  Shape os = x.shape;
  os[nd - 2] = OH, os[nd - 1] = OW;
  RefTensor out(os);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        double m = -INFINITY, s = 0;
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j) {
            int64_t h = oh * sh - ph + i, w = ow * sw - pw + j;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            double v = x.v[(p * H + h) * W + w];
            m = std::max(m, v);
            s += v;
          }
        out.v[(p * OH + oh) * OW + ow] = kind == PoolKind::max ? m : s / static_cast<double>(kh * kw);
      }
  return out;
}

RefTensor ref_adaptive_avg(const RefTensor& x, int64_t OH, int64_t OW) {
  int64_t nd = x.dim(), H = x.shape[nd - 2], W = x.shape[nd - 1];
  int64_t planes = x.numel() / (H * W);
  Shape os = x.shape;
  os[nd - 2] = OH, os[nd - 1] = OW;
  RefTensor out(os);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < OH; ++i)
      for (int64_t j = 0; j < OW; ++j) {
        int64_t h0 = static_cast<int64_t>(std::floor(static_cast<double>(i * H) / OH));
        int64_t h1 = static_cast<int64_t>(std::ceil(static_cast<double>((i + 1) * H) / OH));
        int64_t w0 = static_cast<int64_t>(std::floor(static_cast<double>(j * W) / OW));
        int64_t w1 = static_cast<int64_t>(std::ceil(static_cast<double>((j + 1) * W) / OW));
        double s = 0;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) s += x.v[(p * H + h) * W + w];
        out.v[(p * OH + i) * OW + j] = s / static_cast<double>((h1 - h0) * (w1 - w0));
      }
  return out;
}

// Normalises x (N, C, S...) per channel with the given per-channel mean/var; w, b may be empty.
RefTensor ref_bn_apply(const RefTensor& x, const std::vector<double>& mean, const std::vector<double>& var,
                       const RefTensor& w, const RefTensor& b, double eps) {
  int64_t C = x.shape[1], S = x.numel() / (x.shape[0] * C);
  RefTensor out(x.shape);
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t c = (i / S) % C;
    double y = (x.v[i] - mean[c]) / std::sqrt(var[c] + eps);
    out.v[i] = y * (w.v.empty() ? 1.0 : w.v[c]) + (b.v.empty() ? 0.0 : b.v[c]);
  }
  return out;
}

void ref_channel_stats(const RefTensor& x, std::vector<double>& mean, std::vector<double>& var) {
  int64_t C = x.shape[1], S = x.numel() / (x.shape[0] * C), M = x.shape[0] * S;
  mean.assign(C, 0.0), var.assign(C, 0.0);
  for (int64_t i = 0; i < x.numel(); ++i) mean[(i / S) % C] += x.v[i] / M;
  for (int64_t i = 0; i < x.numel(); ++i) {
    double d = x.v[i] - mean[(i / S) % C];
    var[(i / S) % C] += d * d / M;
  }
}

// Softmax (or log) along dim d.
RefTensor ref_softmax(const RefTensor& x, int64_t d, bool log) {
  d = ref_wrap(d, x.dim());
  RefTensor out(x.shape);
  int64_t L = x.shape[d], inner = 1;
  for (int64_t i = d + 1; i < x.dim(); ++i) inner *= x.shape[i];
  int64_t outer = x.numel() / (L * inner);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t in = 0; in < inner; ++in) {
      auto at = [&](int64_t k) { return (o * L + k) * inner + in; };
      double m = -INFINITY, s = 0;
      for (int64_t k = 0; k < L; ++k) m = std::max(m, x.v[at(k)]);
      for (int64_t k = 0; k < L; ++k) s += std::exp(x.v[at(k)] - m);
      for (int64_t k = 0; k < L; ++k)
        out.v[at(k)] = log ? x.v[at(k)] - m - std::log(s) : std::exp(x.v[at(k)] - m) / s;
    }
  return out;
}

// Cross entropy of logits (N, C, d...) against targets (N, d...), PyTorch's definition.
RefTensor ref_cross_entropy(const RefTensor& x, const RefTensor& t, double eps, int64_t ignore, ops::Reduction red,
                            bool inputs_are_log_probs = false) {
  int64_t N = x.shape[0], C = x.shape[1], inner = x.numel() / (N * C);
  RefTensor per(t.shape);
  double total = 0, kept = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < inner; ++i) {
      int64_t tgt = static_cast<int64_t>(t.v[n * inner + i]);
      if (tgt == ignore) continue;
      auto at = [&](int64_t c) { return x.v[(n * C + c) * inner + i]; };
      double l;
      if (inputs_are_log_probs) {
        l = -at(tgt);
      } else {
        double m = -INFINITY, s = 0, mean_logp = 0;
        for (int64_t c = 0; c < C; ++c) m = std::max(m, at(c));
        for (int64_t c = 0; c < C; ++c) s += std::exp(at(c) - m);
        double lse = m + std::log(s);
        for (int64_t c = 0; c < C; ++c) mean_logp += (at(c) - lse) / C;
        l = (1 - eps) * (lse - at(tgt)) - eps * mean_logp;
      }
      per.v[n * inner + i] = l;
      total += l;
      kept += 1;
    }
  if (red == ops::Reduction::none) return per;
  RefTensor out(Shape{});
  out.v[0] = red == ops::Reduction::sum ? total : total / kept;
  return out;
}

RefTensor ref_reduce_all(const RefTensor& per, ops::Reduction red) {
  if (red == ops::Reduction::none) return per;
  RefTensor out(Shape{});
  for (double v : per.v) out.v[0] += v;
  if (red == ops::Reduction::mean) out.v[0] /= static_cast<double>(per.numel());
  return out;
}

// q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv).
RefTensor ref_attention(const RefTensor& q, const RefTensor& k, const RefTensor& v, bool causal) {
  int64_t B = q.shape[0], H = q.shape[1], T = q.shape[2], D = q.shape[3], S = k.shape[2], Dv = v.shape[3];
  RefTensor out({B, H, T, Dv});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> s(S, -INFINITY);
        double m = -INFINITY;
        for (int64_t j = 0; j < S; ++j) {
          if (causal && j > i) continue;
          double d = 0;
          for (int64_t c = 0; c < D; ++c) d += q.at({b, h, i, c}) * k.at({b, h, j, c});
          s[j] = d / std::sqrt(static_cast<double>(D));
          m = std::max(m, s[j]);
        }
        double z = 0;
        for (int64_t j = 0; j < S; ++j) z += s[j] == -INFINITY ? 0 : std::exp(s[j] - m);
        for (int64_t c = 0; c < Dv; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < S; ++j)
            if (s[j] != -INFINITY) acc += std::exp(s[j] - m) / z * v.at({b, h, j, c});
          out.at({b, h, i, c}) = acc;
        }
      }
  return out;
}

// ---------------------------------------------------------------- tables

Tensor f32_zeros(const Shape& s) { return Tensor::zeros(s, DType::f32); }

OpCase conv_case(std::string name, Shape xs, Shape ws, bool bias, ConvRefOpt o) {
  return OpCase(
      std::move(name),
      [=](Generator& g) { return Inputs{rnd(g, xs), rnd(g, ws), bias ? rnd(g, {ws[0]}) : Tensor()}; },
      [=](const Inputs& x) { return ops::conv2d(x[0], x[1], x[2], to_opt(o)); },
      [=](const std::vector<RefTensor>& r) { return ref_conv(r[0], r[1], bias ? &r[2] : nullptr, o); })
      .tol32(2e-5, 1e-4);
}

std::vector<OpCase> conv_rows() {
  std::vector<OpCase> rows{
      conv_case("basic_bias", {2, 3, 6, 5}, {4, 3, 3, 3}, true, {}),
      conv_case("no_bias", {2, 3, 5, 5}, {2, 3, 2, 3}, false, {}),
      conv_case("stride_pad_dilation", {2, 2, 7, 6}, {3, 2, 3, 2}, true, {2, 1, 1, 2, 1, 2, 1}),
      conv_case("groups", {2, 4, 5, 5}, {6, 2, 3, 3}, true, {1, 2, 1, 1, 1, 1, 2}),
      conv_case("one_channel", {3, 1, 6, 6}, {4, 1, 3, 3}, true, {}),
      // No input gradient and few taps per pixel: the per-image weight-gradient path.
      conv_case("first_layer_weight_grad_only", {3, 1, 10, 9}, {4, 1, 3, 3}, true, {}).skip_grad_for({0}),
      conv_case("kernel_1x1", {2, 3, 4, 4}, {5, 3, 1, 1}, true, {}),
      conv_case("padded_unit_col_stride", {2, 2, 5, 6}, {3, 2, 3, 3}, true, {2, 1, 1, 2, 2, 1, 1}),
  };
  rows[0]
      .bad("conv2d", [] { ops::conv2d(f32_zeros({2, 3, 5}), f32_zeros({4, 3, 3, 3})); })
      .bad("conv2d", [] { ops::conv2d(f32_zeros({2, 3, 5, 5}), f32_zeros({4, 2, 3, 3})); })
      .bad("conv2d", [] { ops::conv2d(f32_zeros({2, 3, 2, 2}), f32_zeros({4, 3, 3, 3})); })
      .bad("conv2d", [] { ops::conv2d(f32_zeros({2, 3, 5, 5}), f32_zeros({4, 3, 3, 3}), f32_zeros({5})); })
      .bad("conv2d", [] {
        ops::Conv2dOptions o;
        o.groups = 2;
        ops::conv2d(f32_zeros({2, 3, 5, 5}), f32_zeros({4, 3, 3, 3}), Tensor(), o);
      })
      .bad("conv2d", [] {
        ops::Conv2dOptions o;
        o.stride = {0, 1};
        ops::conv2d(f32_zeros({2, 3, 5, 5}), f32_zeros({4, 3, 3, 3}), Tensor(), o);
      })
      .bad("conv2d", [] { ops::conv2d(f32_zeros({2, 3, 5, 5}), Tensor::zeros({4, 3, 3, 3}, DType::f64)); });
  return rows;
}
KILN_OP_TABLE(ConvOps, conv_rows());

OpCase pool_case(std::string name, Shape xs, PoolKind kind, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                 std::array<int64_t, 2> p) {
  return OpCase(
      std::move(name), [=](Generator& g) { return Inputs{distinct(g, xs, 0.01)}; },
      [=](const Inputs& x) {
        return kind == PoolKind::max ? ops::max_pool2d(x[0], k, s, p) : ops::avg_pool2d(x[0], k, s, p);
      },
      [=](const std::vector<RefTensor>& r) {
        auto st = s[0] == 0 ? k : s;
        return ref_pool(r[0], kind, k[0], k[1], st[0], st[1], p[0], p[1]);
      });
}

std::vector<OpCase> pool_rows() {
  std::vector<OpCase> rows{
      pool_case("max_2x2", {2, 3, 6, 4}, PoolKind::max, {2, 2}, {0, 0}, {0, 0}),
      pool_case("max_2x2_odd", {2, 2, 7, 5}, PoolKind::max, {2, 2}, {2, 2}, {0, 0}),
      pool_case("max_3x3_s2_p1", {2, 2, 7, 6}, PoolKind::max, {3, 3}, {2, 2}, {1, 1}),
      pool_case("max_overlap_3d", {3, 5, 6}, PoolKind::max, {3, 2}, {1, 1}, {0, 1}),
      pool_case("avg_2x2", {2, 3, 6, 4}, PoolKind::avg, {2, 2}, {0, 0}, {0, 0}),
      pool_case("avg_3x3_s2_p1", {2, 2, 7, 6}, PoolKind::avg, {3, 3}, {2, 2}, {1, 1}),
      OpCase(
          "adaptive_avg", [](Generator& g) { return Inputs{rnd(g, {2, 3, 7, 5})}; },
          [](const Inputs& x) { return ops::adaptive_avg_pool2d(x[0], {3, 4}); },
          [](const std::vector<RefTensor>& r) { return ref_adaptive_avg(r[0], 3, 4); }),
      OpCase(
          "adaptive_avg_global", [](Generator& g) { return Inputs{rnd(g, {2, 3, 4, 5})}; },
          [](const Inputs& x) { return ops::adaptive_avg_pool2d(x[0], {1, 1}); },
          [](const std::vector<RefTensor>& r) { return ref_adaptive_avg(r[0], 1, 1); }),
  };
  rows[0]
      .bad("max_pool2d", [] { ops::max_pool2d(f32_zeros({4, 4}), {2, 2}); })
      .bad("max_pool2d", [] { ops::max_pool2d(f32_zeros({1, 1, 4, 4}), {2, 2}, {0, 0}, {2, 2}); })
      .bad("max_pool2d", [] { ops::max_pool2d(f32_zeros({1, 1, 2, 2}), {3, 3}); })
      .bad("max_pool2d", [] { ops::max_pool2d(Tensor::zeros({1, 1, 4, 4}, DType::i64), {2, 2}); });
  rows[4].bad("avg_pool2d", [] { ops::avg_pool2d(f32_zeros({1, 1, 4, 4}), {0, 2}); });
  rows[6].bad("adaptive_avg_pool2d", [] { ops::adaptive_avg_pool2d(f32_zeros({1, 1, 4, 4}), {0, 2}); });
  return rows;
}
KILN_OP_TABLE(PoolOps, pool_rows());

std::vector<OpCase> norm_rows() {
  auto bn_train = [](Shape xs, bool affine) {
    int64_t C = xs[1];
    return OpCase(
        affine ? "batch_norm_train_" + std::to_string(xs.size()) + "d" : "batch_norm_train_no_affine",
        [=](Generator& g) {
          return Inputs{rnd(g, xs), affine ? rnd(g, {C}, 0.5, 1.5) : Tensor(), affine ? rnd(g, {C}) : Tensor(),
                        Tensor::zeros({C}, DType::f64), Tensor::ones({C}, DType::f64)};
        },
        [](const Inputs& x) { return ops::batch_norm(x[0], x[1], x[2], x[3], x[4], true, 0.1, 1e-5); },
        [](const std::vector<RefTensor>& r) {
          std::vector<double> m, v;
          ref_channel_stats(r[0], m, v);
          return ref_bn_apply(r[0], m, v, r[1], r[2], 1e-5);
        })
        .skip_grad_for({3, 4})
        .tol32(1e-4, 1e-4)
        .grad_tol(1e-6, 1e-5, 1e-4);
  };
  std::vector<OpCase> rows{
      bn_train({4, 3, 3, 2}, true),
      bn_train({6, 4}, true),
      bn_train({3, 2, 5}, false),
      OpCase(
          "batch_norm_eval",
          [](Generator& g) {
            return Inputs{rnd(g, {3, 2, 2, 3}), rnd(g, {2}, 0.5, 1.5), rnd(g, {2}), rnd(g, {2}), rnd(g, {2}, 0.5, 2)};
          },
          [](const Inputs& x) { return ops::batch_norm(x[0], x[1], x[2], x[3], x[4], false, 0.1, 1e-5); },
          [](const std::vector<RefTensor>& r) { return ref_bn_apply(r[0], r[3].v, r[4].v, r[1], r[2], 1e-5); })
          .skip_grad_for({3, 4}),
  };
  for (int affine = 0; affine < 2; ++affine) {
    rows.push_back(
        OpCase(
            affine ? "layer_norm_affine" : "layer_norm_plain",
            [=](Generator& g) {
              return Inputs{rnd(g, {3, 2, 4, 5}), affine ? rnd(g, {4, 5}, 0.5, 1.5) : Tensor(),
                            affine ? rnd(g, {4, 5}) : Tensor()};
            },
            [](const Inputs& x) { return ops::layer_norm(x[0], {4, 5}, x[1], x[2], 1e-5); },
            [](const std::vector<RefTensor>& r) {
              RefTensor out(r[0].shape);
              int64_t D = 20;
              for (int64_t row = 0; row < r[0].numel() / D; ++row) {
                double m = 0, v = 0;
                for (int64_t i = 0; i < D; ++i) m += r[0].v[row * D + i] / D;
                for (int64_t i = 0; i < D; ++i) v += std::pow(r[0].v[row * D + i] - m, 2) / D;
                for (int64_t i = 0; i < D; ++i) {
                  double y = (r[0].v[row * D + i] - m) / std::sqrt(v + 1e-5);
                  out.v[row * D + i] = y * (r[1].v.empty() ? 1 : r[1].v[i]) + (r[2].v.empty() ? 0 : r[2].v[i]);
                }
              }
              return out;
            })
            .tol32(1e-5, 1e-4));
  }
  rows[0]
      .bad("batch_norm", [] { ops::batch_norm(f32_zeros({4}), Tensor(), Tensor(), Tensor(), Tensor(), true); })
      .bad("batch_norm", [] { ops::batch_norm(f32_zeros({4, 3}), f32_zeros({2}), Tensor(), Tensor(), Tensor(), true); })
      .bad("batch_norm", [] { ops::batch_norm(f32_zeros({1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true); })
      .bad("batch_norm", [] { ops::batch_norm(f32_zeros({4, 3}), Tensor(), Tensor(), Tensor(), Tensor(), false); });
  rows[4]
      .bad("layer_norm", [] { ops::layer_norm(f32_zeros({3, 4}), {5}, Tensor(), Tensor()); })
      .bad("layer_norm", [] { ops::layer_norm(f32_zeros({3, 4}), {4}, f32_zeros({3}), Tensor()); });
  return rows;
}
KILN_OP_TABLE(NormOps, norm_rows());

std::vector<OpCase> softmax_rows() {
  std::vector<OpCase> rows;
  for (bool log : {false, true})
    for (int64_t d : {-1, 0, 1}) {
      rows.push_back(OpCase(
          std::string(log ? "log_softmax" : "softmax") + "_dim" + (d < 0 ? "_last" : std::to_string(d)),
          [](Generator& g) { return Inputs{rnd(g, {3, 4, 13}, -3, 3)}; },
          [=](const Inputs& x) { return log ? ops::log_softmax(x[0], d) : ops::softmax(x[0], d); },
          [=](const std::vector<RefTensor>& r) { return ref_softmax(r[0], d, log); }));
    }
  rows[0]
      .bad("softmax", [] { ops::softmax(f32_zeros({3, 4}), 2); })
      .bad("softmax", [] { ops::softmax(Tensor::zeros({3}, DType::i64), 0); });
  return rows;
}
KILN_OP_TABLE(SoftmaxOps, softmax_rows());

Tensor targets_with_ignored(Generator& g, const Shape& s, int64_t C, int64_t ignore) {
  Tensor t = indices(g, s, C);
  for (int64_t i = 0; i < t.numel(); i += 3) t.data<int64_t>()[i] = ignore;
  return t;
}

std::vector<OpCase> loss_rows() {
  using ops::Reduction;
  auto ce = [](std::string name, Shape xs, double eps, bool ignore, Reduction red) {
    Shape ts = xs;
    ts.erase(ts.begin() + 1);
    int64_t C = xs[1];
    return OpCase(
        std::move(name),
        [=](Generator& g) {
          return Inputs{rnd(g, xs, -2, 2), ignore ? targets_with_ignored(g, ts, C, -100) : indices(g, ts, C)};
        },
        [=](const Inputs& x) { return ops::cross_entropy(x[0], x[1], {eps, -100, red}); },
        [=](const std::vector<RefTensor>& r) { return ref_cross_entropy(r[0], r[1], eps, -100, red); });
  };
  std::vector<OpCase> rows{
      ce("cross_entropy_mean", {6, 5}, 0.0, false, Reduction::mean),
      ce("cross_entropy_smooth_ignore", {7, 4}, 0.1, true, Reduction::mean),
      ce("cross_entropy_sum", {5, 9}, 0.0, false, Reduction::sum),
      ce("cross_entropy_spatial_none", {2, 4, 3, 2}, 0.2, true, Reduction::none),
      ce("cross_entropy_spatial_mean", {2, 3, 5}, 0.0, true, Reduction::mean),
      OpCase(
          "nll_loss_ignore",
          [](Generator& g) { return Inputs{rnd(g, {7, 4}, -3, 0), targets_with_ignored(g, {7}, 4, -100)}; },
          [](const Inputs& x) { return ops::nll_loss(x[0], x[1]); },
          [](const std::vector<RefTensor>& r) { return ref_cross_entropy(r[0], r[1], 0, -100, Reduction::mean, true); }),
      OpCase(
          "nll_loss_spatial_sum",
          [](Generator& g) { return Inputs{rnd(g, {2, 3, 4}, -3, 0), indices(g, {2, 4}, 3)}; },
          [](const Inputs& x) { return ops::nll_loss(x[0], x[1], 1, Reduction::sum); },
          [](const std::vector<RefTensor>& r) { return ref_cross_entropy(r[0], r[1], 0, 1, Reduction::sum, true); }),
  };
  for (Reduction red : {Reduction::mean, Reduction::sum, Reduction::none}) {
    std::string tag = red == Reduction::mean ? "mean" : red == Reduction::sum ? "sum" : "none";
    rows.push_back(OpCase(
        "mse_" + tag, [](Generator& g) { return Inputs{rnd(g, {3, 4}), rnd(g, {3, 4})}; },
        [=](const Inputs& x) { return ops::mse_loss(x[0], x[1], red); },
        [=](const std::vector<RefTensor>& r) {
          return ref_reduce_all(ref_zip(r[0], r[1], [](double a, double b) { return (a - b) * (a - b); }), red);
        }));
    rows.push_back(OpCase(
        "bce_logits_" + tag, [](Generator& g) { return Inputs{rnd(g, {3, 5}, -4, 4), rnd(g, {3, 5}, 0, 1)}; },
        [=](const Inputs& x) { return ops::binary_cross_entropy_with_logits(x[0], x[1], red); },
        [=](const std::vector<RefTensor>& r) {
          return ref_reduce_all(ref_zip(r[0], r[1],
                                        [](double x, double t) {
                                          double s = 1 / (1 + std::exp(-x));
                                          return -(t * std::log(s) + (1 - t) * std::log(1 - s));
                                        }),
                                red);
        }));
  }
  rows[0]
      .bad("cross_entropy", [] { ops::cross_entropy(f32_zeros({4, 3}), Tensor::zeros({3}, DType::i64)); })
      .bad("cross_entropy", [] { ops::cross_entropy(f32_zeros({4, 3}), f32_zeros({4})); })
      .bad("cross_entropy",
           [] { ops::cross_entropy(f32_zeros({2, 3}), Tensor::from_vector<int64_t>({0, 3})); })
      .bad("cross_entropy",
           [] { ops::cross_entropy(f32_zeros({2, 3}), Tensor::from_vector<int64_t>({-1, 0})); })
      .bad("cross_entropy", [] {
        ops::CrossEntropyOptions o;
        o.label_smoothing = 1.5;
        ops::cross_entropy(f32_zeros({2, 3}), Tensor::from_vector<int64_t>({0, 1}), o);
      });
  rows[5].bad("nll_loss", [] { ops::nll_loss(f32_zeros({2, 3}), Tensor::from_vector<int64_t>({0, 7})); });
  rows[7].bad("mse_loss", [] { ops::mse_loss(f32_zeros({2, 3}), f32_zeros({3, 2})); });
  rows[8].bad("binary_cross_entropy_with_logits",
              [] { ops::binary_cross_entropy_with_logits(f32_zeros({2, 3}), f32_zeros({3})); });
  return rows;
}
KILN_OP_TABLE(LossOps, loss_rows());

std::vector<OpCase> nn_misc_rows() {
  std::vector<OpCase> rows{
      OpCase(
          "embedding", [](Generator& g) { return Inputs{rnd(g, {5, 3}), indices(g, {4, 3}, 5)}; },
          [](const Inputs& x) { return ops::embedding(x[0], x[1]); },
          [](const std::vector<RefTensor>& r) {
            RefTensor out({4, 3, 3});
            for (int64_t i = 0; i < 12; ++i)
              for (int64_t d = 0; d < 3; ++d) out.v[i * 3 + d] = r[0].v[static_cast<int64_t>(r[1].v[i]) * 3 + d];
            return out;
          }),
      OpCase(
          "dropout_eval", [](Generator& g) { return Inputs{rnd(g, {3, 4})}; },
          [](const Inputs& x) { return ops::dropout(x[0], 0.5, false); },
          [](const std::vector<RefTensor>& r) { return r[0]; }),
  };
  rows[0]
      .bad("embedding", [] { ops::embedding(f32_zeros({5, 3}), Tensor::from_vector<int64_t>({1, 5})); })
      .bad("embedding", [] { ops::embedding(f32_zeros({5, 3}), Tensor::from_vector<int64_t>({-1})); })
      .bad("embedding", [] { ops::embedding(f32_zeros({5}), Tensor::from_vector<int64_t>({1})); })
      .bad("embedding", [] { ops::embedding(f32_zeros({5, 3}), f32_zeros({2})); });
  rows[1].bad("dropout", [] { ops::dropout(f32_zeros({3}), 1.5, true); });
  return rows;
}
KILN_OP_TABLE(NnMiscOps, nn_misc_rows());

std::vector<OpCase> attention_rows() {
  auto att = [](std::string name, Shape qs, Shape ks, Shape vs, bool causal) {
    return OpCase(
               std::move(name), [=](Generator& g) { return Inputs{rnd(g, qs), rnd(g, ks), rnd(g, vs)}; },
               [=](const Inputs& x) { return ops::scaled_dot_product_attention(x[0], x[1], x[2], causal); },
               [=](const std::vector<RefTensor>& r) { return ref_attention(r[0], r[1], r[2], causal); })
        .tol32(2e-5, 1e-4);
  };
  std::vector<OpCase> rows{
      att("attention_causal", {2, 2, 5, 4}, {2, 2, 5, 4}, {2, 2, 5, 4}, true),
      att("attention_full", {1, 3, 4, 3}, {1, 3, 4, 3}, {1, 3, 4, 3}, false),
      att("attention_cross", {2, 1, 3, 4}, {2, 1, 6, 4}, {2, 1, 6, 2}, false),
  };
  rows[0]
      .bad("scaled_dot_product_attention",
           [] { ops::scaled_dot_product_attention(f32_zeros({2, 5, 4}), f32_zeros({2, 5, 4}), f32_zeros({2, 5, 4}), true); })
      .bad("scaled_dot_product_attention", [] {
        ops::scaled_dot_product_attention(f32_zeros({1, 2, 5, 4}), f32_zeros({1, 2, 5, 3}), f32_zeros({1, 2, 5, 4}), true);
      })
      .bad("scaled_dot_product_attention", [] {
        ops::scaled_dot_product_attention(f32_zeros({1, 2, 5, 4}), f32_zeros({1, 2, 5, 4}), f32_zeros({1, 2, 6, 4}), true);
      });
  return rows;
}
KILN_OP_TABLE(AttentionOps, attention_rows());

// ---------------------------------------------------------------- hand-computed values

TEST(NnKnownValues, ConvKnownKernel) {
  // 4x4 image 1..16, Laplacian-like kernel: out = 4*center - up - down - left - right (+ bias 0.5).
  std::vector<float> img(16);
  for (int i = 0; i < 16; ++i) img[i] = static_cast<float>(i + 1);
  Tensor x = Tensor::from_vector<float>(img, {1, 1, 4, 4});
  Tensor w = Tensor::from_vector<float>({0, -1, 0, -1, 4, -1, 0, -1, 0}, {1, 1, 3, 3});
  Tensor y = ops::conv2d(x, w, Tensor::from_vector<float>({0.5f}));
  // A linear ramp has zero Laplacian in the interior.
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f}));
  // With padding 1 the corner (0,0) sees 4*1 - 2 - 5 = -3.
  ops::Conv2dOptions o;
  o.padding = {1, 1};
  Tensor yp = ops::conv2d(x, w, Tensor(), o);
  EXPECT_FLOAT_EQ(yp.to_vector<float>()[0], -3.0f);
  EXPECT_FLOAT_EQ(yp.to_vector<float>()[15], 4 * 16.0f - 12 - 15);
}

TEST(NnKnownValues, CrossEntropyUniformIsLogC) {
  for (int64_t C : {2, 10, 37}) {
    Tensor logits = Tensor::full({4, C}, 0.3);
    Tensor t = Tensor::from_vector<int64_t>({0, 1, 1, 0});
    EXPECT_NEAR(ops::cross_entropy(logits, t).item(), std::log(static_cast<double>(C)), 1e-6);
    ops::CrossEntropyOptions o;
    o.label_smoothing = 0.3;  // smoothing does not change a uniform prediction's loss
    EXPECT_NEAR(ops::cross_entropy(logits, t, o).item(), std::log(static_cast<double>(C)), 1e-6);
  }
}

TEST(NnKnownValues, PoolAndSoftmaxByHand) {
  Tensor x = Tensor::from_vector<float>({1, 5, 2, 0, 3, 4, 8, 7, 9, 1, 0, 2, 6, 6, 3, 1}, {1, 1, 4, 4});
  EXPECT_EQ(ops::max_pool2d(x, {2, 2}).to_vector<float>(), (std::vector<float>{5, 8, 9, 3}));
  EXPECT_EQ(ops::avg_pool2d(x, {2, 2}).to_vector<float>(), (std::vector<float>{13 / 4.f, 17 / 4.f, 22 / 4.f, 6 / 4.f}));
  // NaN propagates through max pooling, on the 2x2 fast path and the general one.
  Tensor xn = Tensor::from_vector<float>({1, NAN, 2, 0, 3, 4, 8, 7, 9, 1, 0, 2, 6, 6, 3, 1}, {1, 1, 4, 4});
  EXPECT_TRUE(std::isnan(ops::max_pool2d(xn, {2, 2}).to_vector<float>()[0]));
  EXPECT_TRUE(std::isnan(ops::max_pool2d(xn, {3, 3}, {1, 1}).to_vector<float>()[0]));
  EXPECT_FALSE(std::isnan(ops::max_pool2d(xn, {2, 2}).to_vector<float>()[1]));
  Tensor s = ops::softmax(Tensor::from_vector<float>({0, std::log(3.0f)}), 0);
  EXPECT_NEAR(s.to_vector<float>()[0], 0.25, 1e-6);
  EXPECT_NEAR(s.to_vector<float>()[1], 0.75, 1e-6);
  // Large logits stay finite (the max is subtracted).
  Tensor big = ops::log_softmax(Tensor::from_vector<float>({1000, 1000}), 0);
  EXPECT_NEAR(big.to_vector<float>()[0], -std::log(2.0), 1e-5);
  // Cross entropy keeps full precision for large logits: loss = log(1 + e^-1) exactly-ish.
  Tensor ce = ops::cross_entropy(Tensor::from_vector<float>({1000, 999}, {1, 2}), Tensor::from_vector<int64_t>({0}));
  EXPECT_NEAR(ce.item(), std::log1p(std::exp(-1.0)), 1e-6);
  Tensor bce = ops::binary_cross_entropy_with_logits(Tensor::from_vector<float>({100, -100}),
                                                     Tensor::from_vector<float>({0, 1}), ops::Reduction::none);
  EXPECT_NEAR(bce.to_vector<float>()[0], 100, 1e-4);
  EXPECT_NEAR(bce.to_vector<float>()[1], 100, 1e-4);
}

TEST(NnNormStats, BatchNormUpdatesRunningStatistics) {
  Generator g(3);
  Tensor x = randn({8, 3, 2, 2}, g);
  Tensor rm = Tensor::zeros({3}), rv = Tensor::ones({3});
  uint64_t v0 = rm.version();
  ops::batch_norm(x, Tensor(), Tensor(), rm, rv, true, 0.1, 1e-5);
  EXPECT_GT(rm.version(), v0);
  RefTensor xr = to_ref(x);
  std::vector<double> m, v;
  ref_channel_stats(xr, m, v);
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(rm.to_vector<double>()[c], 0.1 * m[c], 1e-6);
    EXPECT_NEAR(rv.to_vector<double>()[c], 0.9 + 0.1 * v[c] * 32.0 / 31.0, 1e-6);
  }
  // Eval mode leaves the buffers alone and normalises with them.
  auto before = rm.to_vector<float>();
  Tensor y = ops::batch_norm(x, Tensor(), Tensor(), rm, rv, false);
  EXPECT_EQ(rm.to_vector<float>(), before);
  EXPECT_NEAR(y.to_vector<double>()[0], (xr.v[0] - rm.to_vector<double>()[0]) / std::sqrt(rv.to_vector<double>()[0] + 1e-5),
              1e-5);
}

// ---------------------------------------------------------------- dropout

TEST(NnDropout, MaskIsSeededScaledAndReusedInBackward) {
  Tensor x = Tensor::ones({1000});
  x.set_requires_grad(true);
  Generator g1(7), g2(7);
  Tensor a = ops::dropout(x, 0.3, true, g1), b = ops::dropout(x, 0.3, true, g2);
  auto av = a.to_vector<float>();
  EXPECT_EQ(av, b.to_vector<float>());
  int kept = 0;
  for (float v : av) {
    EXPECT_TRUE(v == 0.0f || std::abs(v - 1 / 0.7f) < 1e-6) << v;
    kept += v != 0.0f;
  }
  EXPECT_NEAR(kept / 1000.0, 0.7, 0.06);
  // The mask is element i's uniform draw, the same numbers rand() gives for that generator state.
  Generator g3(7);
  auto u = rand({1000}, g3).to_vector<float>();
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(av[i] != 0.0f, u[i] >= 0.3f) << i;
  // A second call draws a fresh mask.
  EXPECT_NE(ops::dropout(x, 0.3, true, g1).to_vector<float>(), av);
  autograd::backward(ops::sum(a));
  EXPECT_EQ(x.grad().to_vector<float>(), av);
  EXPECT_TRUE(ops::dropout(x, 0.3, false).same(x));
  for (float v : ops::dropout(x, 1.0, true, g1).to_vector<float>()) EXPECT_EQ(v, 0.0f);
}

// ---------------------------------------------------------------- f32 fast paths at model sizes

// Forward and backward of the f32 path against the f64 plain loops, at a size that spans several
// im2col chunks, then bitwise determinism of a repeated run.
void check_conv_f32(const Shape& xs, const Shape& ws, ConvRefOpt o, bool input_grad = true) {
  Generator g(11);
  Tensor x = randn(xs, g), w = randn(ws, g), b = randn({ws[0]}, g);
  x.set_requires_grad(input_grad);
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  Tensor y = ops::conv2d(x, w, b, to_opt(o));
  RefTensor want = ref_conv(to_ref(x), to_ref(w), nullptr, o);
  RefTensor br = to_ref(b);
  int64_t P = want.shape[2] * want.shape[3];
  for (int64_t i = 0; i < want.numel(); ++i) want.v[i] += br.v[(i / P) % ws[0]];
  double K = static_cast<double>(ws[1] * ws[2] * ws[3]);
  expect_matches(y, want, 1e-5 * K, 1e-4, "conv2d f32 forward");
  Tensor gout = randn(y.shape(), g);
  autograd::backward({y}, {gout});
  RefTensor dx, dw, db;
  ref_conv_backward(to_ref(x), to_ref(w), to_ref(gout), o, dx, dw, db);
  if (input_grad) expect_matches(x.grad(), dx, 1e-5 * ws[0] * ws[2] * ws[3], 1e-4, "conv2d f32 dx");
  double n_out = static_cast<double>(xs[0] * P);
  expect_matches(w.grad(), dw, 2e-6 * n_out, 1e-4, "conv2d f32 dw");
  expect_matches(b.grad(), db, 2e-6 * n_out, 1e-4, "conv2d f32 db");
  auto gw = w.grad().to_vector<float>();
  w.set_grad(Tensor());
  autograd::backward({ops::conv2d(x, w, b, to_opt(o))}, {gout});
  EXPECT_EQ(w.grad().to_vector<float>(), gw) << "weight gradient not bitwise reproducible";
}

TEST(NnConvF32, FirstLayerShape) {
  check_conv_f32({20, 1, 28, 28}, {32, 1, 3, 3}, {}, /*input_grad=*/false);  // as in the cnn model
  check_conv_f32({20, 1, 28, 28}, {32, 1, 3, 3}, {});
}
TEST(NnConvF32, SecondLayerShapeManyChunks) { check_conv_f32({40, 32, 13, 13}, {64, 32, 3, 3}, {}); }
TEST(NnConvF32, RecomputedColumns) {
  int64_t& limit = ops::cpu::conv_keep_columns_limit();
  const int64_t saved = limit;
  limit = 0;  // backward recomputes im2col chunk by chunk
  check_conv_f32({40, 32, 13, 13}, {64, 32, 3, 3}, {});
  check_conv_f32({20, 1, 28, 28}, {32, 1, 3, 3}, {}, /*input_grad=*/false);
  limit = saved;
}
TEST(NnConvF32, StridedPaddedGrouped) { check_conv_f32({9, 8, 11, 10}, {6, 4, 3, 3}, {2, 2, 1, 1, 1, 1, 2}); }

// Each subset of {input, weight, bias} requiring grad takes its own backward path (no columns
// kept, bias summed directly, ...); all must agree with the full backward.
TEST(NnConvF32, PartialGradientsMatchFullBackward) {
  Generator g(12);
  Tensor x = randn({3, 4, 6, 5}, g), w = randn({5, 4, 3, 3}, g), b = randn({5}, g);
  ops::Conv2dOptions o;
  o.padding = {1, 0};
  Tensor gout;
  std::vector<Tensor> full;
  for (int mask = 7; mask >= 1; --mask) {
    Tensor xs = x.detach(), ws = w.detach(), bs = b.detach();
    Tensor* ts[3] = {&xs, &ws, &bs};
    for (int i = 0; i < 3; ++i)
      if (mask & (1 << i)) ts[i]->set_requires_grad(true);
    Tensor y = ops::conv2d(xs, ws, bs, o);
    if (!gout.defined()) gout = randn(y.shape(), g);
    autograd::backward({y}, {gout});
    for (int i = 0; i < 3; ++i) {
      if (!(mask & (1 << i))) continue;
      if (mask == 7) {
        full.push_back(ts[i]->grad());
      } else {
        expect_matches(ts[i]->grad(), to_ref(full[i]), 1e-5, 1e-5, "conv2d partial grad, mask " + std::to_string(mask));
      }
    }
  }
}

TEST(NnPoolF32, MaxPoolBackwardRoutesToArgmax) {
  Generator g(5);
  Tensor x = distinct(g, {3, 4, 9, 7}, 0.001);
  Tensor xf = to_dtype_raw(x, DType::f32);
  xf.set_requires_grad(true);
  Tensor y = ops::max_pool2d(xf, {2, 2});
  Tensor gout = randn(y.shape(), g);
  autograd::backward({y}, {gout});
  auto xv = xf.to_vector<float>(), gv = gout.to_vector<float>(), dx = xf.grad().to_vector<float>();
  std::vector<float> want(xv.size(), 0.0f);
  for (int64_t p = 0; p < 12; ++p)
    for (int64_t oh = 0; oh < 4; ++oh)
      for (int64_t ow = 0; ow < 3; ++ow) {
        int64_t best = -1;
        for (int64_t i = 0; i < 2; ++i)
          for (int64_t j = 0; j < 2; ++j) {
            int64_t k = (p * 9 + 2 * oh + i) * 7 + 2 * ow + j;
            if (best < 0 || xv[k] > xv[best]) best = k;
          }
        want[best] += gv[(p * 4 + oh) * 3 + ow];
      }
  EXPECT_EQ(dx, want);
}

TEST(NnSoftmaxF32, RowsMatchReferenceAtModelWidths) {
  Generator g(9);
  for (int64_t n : {1, 7, 8, 65, 128, 1000}) {
    Tensor x = randn({17, n}, g);
    expect_matches(ops::softmax(x, -1), ref_softmax(to_ref(x), -1, false), 1e-7, 1e-5, "softmax n=" + std::to_string(n));
    expect_matches(ops::log_softmax(x, -1), ref_softmax(to_ref(x), -1, true), 1e-5, 1e-5,
                   "log_softmax n=" + std::to_string(n));
  }
}

TEST(NnLossF32, CrossEntropyGradientIsSoftmaxMinusOneHot) {
  Generator g(4);
  Tensor x = randn({64, 65}, g);
  x.set_requires_grad(true);
  Tensor t = indices(g, {64}, 65);
  autograd::backward(ops::cross_entropy(x, t));
  RefTensor p = ref_softmax(to_ref(x), -1, false);
  for (int64_t r = 0; r < 64; ++r) p.v[r * 65 + t.data<int64_t>()[r]] -= 1;
  for (double& v : p.v) v /= 64;
  expect_matches(x.grad(), p, 1e-7, 1e-4, "cross_entropy grad");
}

TEST(NnAttentionF32, CausalMatchesReferenceWithGradients) {
  Generator g(8);
  Tensor q = randn({2, 4, 33, 16}, g), k = randn({2, 4, 33, 16}, g), v = randn({2, 4, 33, 16}, g);
  Tensor y = ops::scaled_dot_product_attention(q, k, v, true);
  expect_matches(y, ref_attention(to_ref(q), to_ref(k), to_ref(v), true), 1e-5, 1e-4, "attention f32");
  // Gradients against the f64 path (itself gradchecked in AttentionOps).
  Tensor q64 = to_dtype_raw(q, DType::f64), k64 = to_dtype_raw(k, DType::f64), v64 = to_dtype_raw(v, DType::f64);
  for (Tensor* t : {&q, &k, &v, &q64, &k64, &v64}) t->set_requires_grad(true);
  Tensor gout = randn(y.shape(), g);
  autograd::backward({ops::scaled_dot_product_attention(q, k, v, true)}, {gout});
  autograd::backward({ops::scaled_dot_product_attention(q64, k64, v64, true)}, {to_dtype_raw(gout, DType::f64)});
  expect_matches(q.grad(), to_ref(q64.grad()), 1e-5, 1e-4, "attention dq");
  expect_matches(k.grad(), to_ref(k64.grad()), 1e-5, 1e-4, "attention dk");
  expect_matches(v.grad(), to_ref(v64.grad()), 1e-5, 1e-4, "attention dv");
}

TEST(NnNormF32, LayerNormParamGradsAcrossManyRowChunks) {
  Generator g(6);
  Tensor x = randn({300, 48}, g), w = randn({48}, g), b = randn({48}, g);
  Tensor x64 = to_dtype_raw(x, DType::f64), w64 = to_dtype_raw(w, DType::f64), b64 = to_dtype_raw(b, DType::f64);
  for (Tensor* t : {&x, &w, &b, &x64, &w64, &b64}) t->set_requires_grad(true);
  Tensor gout = randn({300, 48}, g);
  autograd::backward({ops::layer_norm(x, {48}, w, b)}, {gout});
  autograd::backward({ops::layer_norm(x64, {48}, w64, b64)}, {to_dtype_raw(gout, DType::f64)});
  expect_matches(x.grad(), to_ref(x64.grad()), 1e-5, 1e-4, "layer_norm dx");
  expect_matches(w.grad(), to_ref(w64.grad()), 1e-4, 1e-4, "layer_norm dw");
  expect_matches(b.grad(), to_ref(b64.grad()), 1e-4, 1e-4, "layer_norm db");
}

}  // namespace

// Inference max pooling (no input needs a gradient) takes an index-free path; it must give the
// values the indexed path gives, NaN windows included, for 2x2 and general windows.
TEST(NnKnownValues, MaxPoolWithoutGradientMatchesTheIndexedPath) {
  Generator gen(4);
  Tensor x = randn({2, 3, 9, 10}, gen);
  x.data<float>()[5] = NAN;
  x.data<float>()[77] = -INFINITY;
  for (auto [k, s] : {std::pair<int64_t, int64_t>{2, 2}, {3, 2}, {2, 1}}) {
    Tensor leaf = clone_raw(x);
    leaf.set_requires_grad(true);
    Tensor with_idx = ops::max_pool2d(leaf, {k, k}, {s, s});
    Tensor without = ops::max_pool2d(x, {k, k}, {s, s});
    std::vector<float> a = with_idx.detach().to_vector<float>(), b = without.to_vector<float>();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_TRUE((std::isnan(a[i]) && std::isnan(b[i])) || a[i] == b[i]) << "k=" << k << " s=" << s << " i=" << i;
  }
}
