// conv2d as im2col + GEMM, forward and backward. The batch is processed in chunks of images whose
// column matrix (C*KH*KW (+1), chunk*OH*OW) stays a few MB; each chunk is then a single GEMM:
//   forward   out[n] (O, P)   = W_aug (O, K+1) @ col[:, n*P:(n+1)*P]   (batched over n, bias fused
//                                                                      through a row of ones)
//   weight    dW_aug (O, K+1) = gout_r (O, nb*P) @ col^T                (K = nb*P: one big GEMM;
//                                                                      the ones row yields db)
//   input     dcol (K, nb*P)  = W^T (K, O) @ gout_r, then col2im
// Training keeps the forward columns for the weight GEMM (up to a size limit). A first layer
// (few taps, large images, no input gradient) takes per-image weight GEMMs instead, which avoids
// regrouping its large output gradient. Partials of dW are added in a fixed order, so gradients are
// deterministic. f32 GEMMs run on oneDNN; f64 runs the same code over the reference GEMM.
#include <algorithm>
#include <cstring>
#include <vector>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/autograd_record.h"
#include "kiln/ops/cpu/conv_kernels.h"
#include "kiln/ops/cpu/gemm.h"
#include "kiln/ops/nn_ops.h"

namespace kiln::ops {

namespace {

// Column buffer budget per chunk, in elements (4 MB of f32, L3-resident). Smaller chunks measured
// no faster on this machine, and larger ones make the GEMMs no more efficient.
constexpr int64_t kColBudget = int64_t{1} << 20;

struct ConvPlan {
  int64_t N, C, H, W, O, KH, KW, OH, OW, groups, Cg, Og;
  bool bias;
  Conv2dOptions opt;
  int64_t taps() const { return Cg * KH * KW; }
  int64_t col_rows() const { return taps() + (bias ? 1 : 0); }  // per group, with the ones row
  int64_t P() const { return OH * OW; }
  cpu::ConvGeom geom(int64_t group_rows) const {
    return {C, H, W, KH, KW, OH, OW, opt.stride[0], opt.stride[1], opt.padding[0], opt.padding[1],
            opt.dilation[0], opt.dilation[1], Cg, group_rows};
  }
  int64_t chunk(int64_t group_rows) const {
    return std::clamp<int64_t>(kColBudget / std::max<int64_t>(1, groups * group_rows * P()), 1,
                               std::max<int64_t>(N, 1));
  }
};

// Per-thread scratch that only grows, so steady-state training allocates nothing here.
template <typename T>
T* scratch(int slot, int64_t n) {
  thread_local std::vector<T> bufs[4];
  auto& v = bufs[slot];
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

using cpu::gemm;

// col_keep, when not null, receives every chunk's columns (chunk at n0 starts at n0*groups*Kb*P)
// so that backward can skip recomputing them.
template <typename T>
void conv_forward(const ConvPlan& p, const T* x, const T* w, const T* b, T* out, T* col_keep) {
  const int64_t taps = p.taps(), Kb = p.col_rows(), P = p.P(), CHW = p.C * p.H * p.W;
  const T* wa = w;
  std::vector<T> waug;
  if (b) {  // W_aug (O, taps + 1): the bias is the weight of the ones row.
    waug.resize(static_cast<size_t>(p.O * Kb));
    for (int64_t o = 0; o < p.O; ++o) {
      std::copy(w + o * taps, w + (o + 1) * taps, waug.data() + o * Kb);
      waug[o * Kb + taps] = b[o];
    }
    wa = waug.data();
  }
  const cpu::ConvGeom geom = p.geom(Kb);
  const int64_t nbmax = p.chunk(Kb);
  T* col_scratch = col_keep ? nullptr : scratch<T>(0, p.groups * Kb * nbmax * P);
  for (int64_t n0 = 0; n0 < p.N; n0 += nbmax) {
    const int64_t nb = std::min(nbmax, p.N - n0), ld = nb * P;
    T* col = col_keep ? col_keep + n0 * p.groups * Kb * P : col_scratch;
    cpu::im2col(x + n0 * CHW, col, geom, nb, ld);
    if (p.groups == 1) {
      gemm<T>(nb, p.O, P, Kb, {wa, 0, Kb, 1}, {col, P, ld, 1}, out + n0 * p.O * P);
      continue;
    }
    T* tmp = scratch<T>(1, nb * p.Og * P);
    for (int64_t g = 0; g < p.groups; ++g) {
      gemm<T>(nb, p.Og, P, Kb, {wa + g * p.Og * Kb, 0, Kb, 1}, {col + g * Kb * ld, P, ld, 1}, tmp);
      for (int64_t j = 0; j < nb; ++j)
        std::memcpy(out + ((n0 + j) * p.O + g * p.Og) * P, tmp + j * p.Og * P, sizeof(T) * p.Og * P);
    }
  }
}

// gout (N, O, P) images [n0, n0+nb) -> gr (O, nb*P): the layout the weight and input GEMMs need.
template <typename T>
void gather_grad_rows(const T* gout, T* gr, int64_t O, int64_t P, int64_t nb) {
  parallel_for(0, O * nb, std::max<int64_t>(1, 8192 / P), [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t o = t / nb, j = t % nb;
      std::memcpy(gr + (o * nb + j) * P, gout + (j * O + o) * P, sizeof(T) * P);
    }
  });
}

// gx, gw, gb may be null (not needed). gw is (O, taps), gb (O). saved_col is conv_forward's
// col_keep, or null to recompute the columns chunk by chunk.
template <typename T>
void conv_backward(const ConvPlan& p, const T* x, const T* w, const T* gout, T* gx, T* gw, T* gb,
                   const T* saved_col) {
  const int64_t taps = p.taps(), P = p.P(), CHW = p.C * p.H * p.W;
  const int64_t Kb = p.col_rows();
  const bool fuse_bias = gw && p.bias;  // db is the ones row's column of the dW GEMM
  // Gathering gout into (O, nb*P) lets the weight GEMM run with K = nb*P. When an image's weight
  // partial (O, Kb) is much smaller than its gradient (O, P) -- few taps over a large image, as in
  // a first layer on raw pixels -- a batched per-image GEMM plus a reduction moves less memory.
  const bool per_image = gw && !gx && Kb * 4 <= P;
  const bool need_gr = gx || (gw && !per_image);
  const cpu::ConvGeom geom = p.geom(Kb), geom_plain = p.geom(taps);
  const int64_t nbmax = p.chunk(Kb);
  T* gr = need_gr ? scratch<T>(1, p.O * nbmax * P) : nullptr;
  T* col_scratch = gw && !saved_col ? scratch<T>(0, p.groups * Kb * nbmax * P) : nullptr;
  T* dcol = gx ? scratch<T>(2, p.groups * taps * nbmax * P) : nullptr;
  T* part = gw ? scratch<T>(3, p.O * Kb * (per_image ? nbmax : 1)) : nullptr;
  std::vector<T> acc(gw ? static_cast<size_t>(p.O * Kb) : 0, T(0));
  std::vector<double> bias_acc(gb && !fuse_bias ? static_cast<size_t>(p.O) : 0, 0.0);
  for (int64_t n0 = 0; n0 < p.N; n0 += nbmax) {
    const int64_t nb = std::min(nbmax, p.N - n0), ld = nb * P;
    const T* g0 = gout + n0 * p.O * P;
    if (need_gr) gather_grad_rows(g0, gr, p.O, P, nb);
    if (gw) {
      const T* col = saved_col ? saved_col + n0 * p.groups * Kb * P : col_scratch;
      if (!saved_col) cpu::im2col(x + n0 * CHW, col_scratch, geom, nb, ld);
      if (per_image) {
        // part (groups, nb, Og, Kb): image j's partial, added into acc in image order.
        for (int64_t g = 0; g < p.groups; ++g)
          gemm<T>(nb, p.Og, Kb, P, {g0 + g * p.Og * P, p.O * P, P, 1}, {col + g * Kb * ld, P, 1, ld},
                  part + g * nb * p.Og * Kb);
        for (int64_t g = 0; g < p.groups; ++g)
          for (int64_t j = 0; j < nb; ++j) {
            const T* src = part + (g * nb + j) * p.Og * Kb;
            T* dst = acc.data() + g * p.Og * Kb;
            for (int64_t i = 0; i < p.Og * Kb; ++i) dst[i] += src[i];
          }
      } else {
        const bool first = n0 == 0;
        T* dst = first ? acc.data() : part;
        for (int64_t g = 0; g < p.groups; ++g)
          gemm<T>(1, p.Og, Kb, ld, {gr + g * p.Og * ld, 0, ld, 1}, {col + g * Kb * ld, 0, 1, ld},
                  dst + g * p.Og * Kb);
        if (!first)
          for (int64_t i = 0; i < p.O * Kb; ++i) acc[i] += part[i];
      }
    }
    if (gb && !fuse_bias) {
      for (int64_t o = 0; o < p.O; ++o) {
        double s = 0;
        for (int64_t j = 0; j < nb; ++j) {
          const T* row = g0 + (j * p.O + o) * P;
          for (int64_t i = 0; i < P; ++i) s += row[i];
        }
        bias_acc[o] += s;
      }
    }
    if (gx) {
      for (int64_t g = 0; g < p.groups; ++g)
        gemm<T>(1, taps, ld, p.Og, {w + g * p.Og * taps, 0, 1, taps}, {gr + g * p.Og * ld, 0, ld, 1},
                dcol + g * taps * ld);
      cpu::col2im(dcol, gx + n0 * CHW, geom_plain, nb, ld);
    }
  }
  if (gw)
    for (int64_t o = 0; o < p.O; ++o) {
      std::copy(acc.data() + o * Kb, acc.data() + o * Kb + taps, gw + o * taps);
      if (fuse_bias && gb) gb[o] = acc[o * Kb + taps];
    }
  if (gb && !fuse_bias)
    for (int64_t o = 0; o < p.O; ++o) gb[o] = static_cast<T>(bias_acc[o]);
}

ConvPlan plan_conv(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& opt) {
  KILN_CHECK(x.dim() == 4, "conv2d: input must be 4-d (N, C, H, W), got ", shape_str(x.shape()));
  KILN_CHECK(w.dim() == 4, "conv2d: weight must be 4-d (O, C/groups, KH, KW), got ", shape_str(w.shape()));
  KILN_CHECK_TYPE(x.dtype() == w.dtype() && (x.dtype() == DType::f32 || x.dtype() == DType::f64),
                  "conv2d: expected f32 or f64 input and weight of one dtype, got ", dtype_name(x.dtype()), " and ",
                  dtype_name(w.dtype()));
  for (int i = 0; i < 2; ++i) {
    KILN_CHECK(opt.stride[i] >= 1 && opt.dilation[i] >= 1 && opt.padding[i] >= 0, "conv2d: stride and dilation must "
               "be >= 1 and padding >= 0, got stride [", opt.stride[0], ", ", opt.stride[1], "], padding [",
               opt.padding[0], ", ", opt.padding[1], "], dilation [", opt.dilation[0], ", ", opt.dilation[1], "]");
  }
  ConvPlan p;
  p.opt = opt;
  p.bias = b.defined();
  p.N = x.shape()[0], p.C = x.shape()[1], p.H = x.shape()[2], p.W = x.shape()[3];
  p.O = w.shape()[0], p.KH = w.shape()[2], p.KW = w.shape()[3];
  p.groups = opt.groups;
  KILN_CHECK(p.groups >= 1 && p.C % p.groups == 0 && p.O % p.groups == 0, "conv2d: groups (", p.groups,
             ") must divide both input channels (", p.C, ") and output channels (", p.O, ")");
  p.Cg = p.C / p.groups, p.Og = p.O / p.groups;
  KILN_CHECK(w.shape()[1] == p.Cg, "conv2d: weight ", shape_str(w.shape()), " expects ", w.shape()[1] * p.groups,
             " input channels, but input ", shape_str(x.shape()), " has ", p.C, " (groups = ", p.groups, ")");
  KILN_CHECK(p.KH >= 1 && p.KW >= 1, "conv2d: empty kernel ", shape_str(w.shape()));
  const int64_t eh = opt.dilation[0] * (p.KH - 1) + 1, ew = opt.dilation[1] * (p.KW - 1) + 1;
  const int64_t hp = p.H + 2 * opt.padding[0], wp = p.W + 2 * opt.padding[1];
  KILN_CHECK(hp >= eh && wp >= ew, "conv2d: kernel ", p.KH, "x", p.KW, " (dilated ", eh, "x", ew,
             ") is larger than the padded input ", hp, "x", wp, " of ", shape_str(x.shape()));
  p.OH = (hp - eh) / opt.stride[0] + 1;
  p.OW = (wp - ew) / opt.stride[1] + 1;
  if (b.defined()) {
    KILN_CHECK(b.dim() == 1 && b.shape()[0] == p.O, "conv2d: bias ", shape_str(b.shape()), " does not match ", p.O,
               " output channels");
    KILN_CHECK_TYPE(b.dtype() == x.dtype(), "conv2d: bias dtype ", dtype_name(b.dtype()), " differs from input ",
                    dtype_name(x.dtype()));
  }
  return p;
}

}  // namespace

int64_t& cpu::conv_keep_columns_limit() {
  static int64_t limit = int64_t{1} << 24;
  return limit;
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& opt) {
  const ConvPlan p = plan_conv(x, w, b, opt);
  Tensor xc = contiguous_raw(x), wc = contiguous_raw(w), bc = b.defined() ? contiguous_raw(b) : Tensor();
  Tensor out = Tensor::empty({p.N, p.O, p.OH, p.OW}, x.dtype());
  std::vector<Tensor> inputs{x, w};
  if (b.defined()) inputs.push_back(b);
  const bool track = any_requires_grad(inputs);
  // The weight gradient needs the columns again: keep them when they are not too large.
  const int64_t col_elems = p.groups * p.col_rows() * p.N * p.P();
  Tensor col = track && w.requires_grad() && col_elems <= cpu::conv_keep_columns_limit() ? Tensor::empty({col_elems}, x.dtype())
                                                                        : Tensor();
  if (out.numel() > 0)
    dispatch_float(x.dtype(), "conv2d", [&]<typename T>() {
      conv_forward<T>(p, xc.data<T>(), wc.data<T>(), bc.defined() ? bc.data<T>() : nullptr, out.data<T>(),
                      col.defined() ? col.data<T>() : nullptr);
    });
  if (!track) return out;
  return record("conv2d", inputs, out, [p, x_ = SavedTensor(xc, "conv2d"), w_ = SavedTensor(wc, "conv2d"), col](
                                           const Tensor& g, const std::vector<bool>& need) {
    const Tensor& x = x_.get();
    const Tensor& w = w_.get();
    Tensor gc = contiguous_raw(g);
    std::vector<Tensor> grads(need.size());
    if (need[0]) grads[0] = Tensor::empty(x.shape(), x.dtype());
    if (need[1]) grads[1] = Tensor::empty(w.shape(), w.dtype());
    if (need.size() > 2 && need[2]) grads[2] = Tensor::empty({p.O}, w.dtype());
    if (p.N == 0 || p.O == 0) {
      for (auto& t : grads)
        if (t.defined()) fill_raw(t, 0.0);
      return grads;
    }
    dispatch_float(x.dtype(), "conv2d backward", [&]<typename T>() {
      auto ptr = [](const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
      conv_backward<T>(p, x.data<T>(), w.data<T>(), gc.data<T>(), ptr(grads[0]), ptr(grads[1]),
                       grads.size() > 2 ? ptr(grads[2]) : nullptr, col.defined() ? col.data<T>() : nullptr);
    });
    return grads;
  });
}

}  // namespace kiln::ops
