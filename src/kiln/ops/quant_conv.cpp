// conv_integer and qlinear_conv (quant_ops.h): integer convolution over any number of spatial dims.
// Zero points are subtracted once up front (x - x_zp, w - w_zp[m] in i32), so padding is plain
// zeros; then per image and group an N-d im2col and the exact int32 GEMM (quant_common.h).
// Correctness first: no VNNI path yet.
#include <algorithm>
#include <cmath>

#include "kiln/core/error.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/quant_common.h"
#include "kiln/ops/quant_ops.h"

namespace kiln::ops {

using namespace quant;

namespace {

struct ConvPlan {
  int64_t N = 0, C = 0, M = 0, groups = 1, Cg = 0, Mg = 0, k = 0;
  Shape in_sp, ker_sp, out_sp;
  std::vector<int64_t> strides, pads, dilations;
  int64_t S = 1, P = 1, taps = 1, R = 0;  // input positions, output positions, kernel taps, Cg * taps
};

ConvPlan plan_conv(const Tensor& x, const Tensor& w, const QuantConvOptions& opt, const char* op) {
  check_q8(x, op, "x");
  check_q8(w, op, "w");
  KILN_CHECK(x.dim() >= 3 && w.dim() == x.dim(), op, ": expected x (N, C, d...) and w (M, C/groups, k...) of one rank "
             ">= 3, got x ", shape_str(x.shape()), " and w ", shape_str(w.shape()));
  ConvPlan p;
  p.k = x.dim() - 2;
  p.N = x.shape()[0], p.C = x.shape()[1], p.M = w.shape()[0], p.groups = opt.groups;
  p.in_sp.assign(x.shape().begin() + 2, x.shape().end());
  p.ker_sp.assign(w.shape().begin() + 2, w.shape().end());
  const size_t k = static_cast<size_t>(p.k);
  p.strides = opt.strides.empty() ? std::vector<int64_t>(k, 1) : opt.strides;
  p.dilations = opt.dilations.empty() ? std::vector<int64_t>(k, 1) : opt.dilations;
  p.pads = opt.pads.empty() ? std::vector<int64_t>(2 * k, 0) : opt.pads;
  KILN_CHECK(p.strides.size() == k && p.dilations.size() == k && p.pads.size() == 2 * k, op, ": for ", k,
             " spatial dims expected ", k, " strides, ", k, " dilations and ", 2 * k, " pads, got ", p.strides.size(),
             ", ", p.dilations.size(), " and ", p.pads.size());
  KILN_CHECK(p.groups >= 1 && p.C % p.groups == 0 && p.M % p.groups == 0, op, ": groups (", p.groups,
             ") must divide both input channels (", p.C, ") and output channels (", p.M, ")");
  p.Cg = p.C / p.groups, p.Mg = p.M / p.groups;
  KILN_CHECK(w.shape()[1] == p.Cg, op, ": weight ", shape_str(w.shape()), " expects ", w.shape()[1] * p.groups,
             " input channels, but x ", shape_str(x.shape()), " has ", p.C, " (groups = ", p.groups, ")");
  p.out_sp.resize(k);
  for (size_t j = 0; j < k; ++j) {
    KILN_CHECK(p.strides[j] >= 1 && p.dilations[j] >= 1 && p.pads[j] >= 0 && p.pads[j + k] >= 0 && p.ker_sp[j] >= 1,
               op, ": strides and dilations must be >= 1, pads >= 0 and the kernel non-empty (spatial dim ", j, ")");
    const int64_t span = p.dilations[j] * (p.ker_sp[j] - 1) + 1, padded = p.in_sp[j] + p.pads[j] + p.pads[j + k];
    KILN_CHECK(padded >= span, op, ": kernel ", shape_str(p.ker_sp), " (dilated extent ", span, ") is larger than the ",
               "padded input ", padded, " in spatial dim ", j, " of x ", shape_str(x.shape()));
    p.out_sp[j] = (padded - span) / p.strides[j] + 1;
    p.S *= p.in_sp[j], p.P *= p.out_sp[j], p.taps *= p.ker_sp[j];
  }
  p.R = p.Cg * p.taps;
  return p;
}

// col (R, P) for one image and group: col[(c, kk)][o] = xg[c, o*stride - pad_begin + kk*dilation],
// 0 outside. tab[j][kk_j * out_j + o_j] is that input coordinate on dim j, or -1.
void im2col_nd(const int32_t* xg, int32_t* col, const ConvPlan& p, const std::vector<std::vector<int64_t>>& tab) {
  const int64_t k = p.k, last = p.out_sp[k - 1], rows = p.P / last;
  Strides in_st = contiguous_strides(p.in_sp);
  parallel_for(0, p.R, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, p.P)), [&](int64_t lo, int64_t hi) {
    std::vector<int64_t> kk(static_cast<size_t>(k)), idx(static_cast<size_t>(k));
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t c = r / p.taps;
      for (int64_t j = k - 1, t = r % p.taps; j >= 0; --j) {
        kk[j] = t % p.ker_sp[j];
        t /= p.ker_sp[j];
      }
      const int32_t* src = xg + c * p.S;
      int32_t* dst = col + r * p.P;
      const int64_t* lt = tab[k - 1].data() + kk[k - 1] * last;
      std::fill(idx.begin(), idx.end(), 0);
      for (int64_t row = 0; row < rows; ++row) {
        int64_t base = 0;
        bool outside = false;
        for (int64_t j = 0; j < k - 1; ++j) {
          const int64_t v = tab[j][kk[j] * p.out_sp[j] + idx[j]];
          outside |= v < 0;
          base += v * in_st[j];
        }
        int32_t* d = dst + row * last;
        if (outside) {
          std::fill(d, d + last, 0);
        } else {
          for (int64_t o = 0; o < last; ++o) d[o] = lt[o] < 0 ? 0 : src[base + lt[o]];
        }
        for (int64_t j = k - 2; j >= 0; --j) {
          if (++idx[j] < p.out_sp[j]) break;
          idx[j] = 0;
        }
      }
    }
  });
}

// The i32 accumulators (N, M, out...) of conv(x - x_zp, w - w_zp).
Tensor conv_accumulate(const Tensor& x, const Tensor& w, const Tensor& x_zp, const Tensor& w_zp, const ConvPlan& p,
                       const char* op) {
  check_zero_point(x_zp, x.dtype(), op, "x_zero_point");
  check_zero_point(w_zp, w.dtype(), op, "w_zero_point");
  KILN_CHECK(!x_zp.defined() || x_zp.numel() == 1, op, ": x_zero_point must be one value (per tensor), got ",
             shape_str(x_zp.shape()));
  KILN_CHECK(!w_zp.defined() || w_zp.numel() == 1 || (w_zp.dim() == 1 && w_zp.numel() == p.M), op,
             ": w_zero_point must be one value or (", p.M, ") per output channel, got ", shape_str(w_zp.shape()));
  Shape out_shape{p.N, p.M};
  out_shape.insert(out_shape.end(), p.out_sp.begin(), p.out_sp.end());
  Tensor out = Tensor::empty(out_shape, DType::i32);
  if (out.numel() == 0) return out;
  const Tensor xs = shifted_i32(x, x_zp.defined() ? broadcast_to(x_zp.detach().as_strided({}, {}, x_zp.offset()),
                                                                 x.shape(), op, "x_zero_point")
                                                  : Tensor());
  Tensor ws = to_i32(w);
  {
    const std::vector<int32_t> wz = zero_point_values(w_zp, 1);
    int32_t* wd = ws.data<int32_t>();
    for (int64_t m = 0; m < p.M; ++m) {
      const int32_t z = wz.size() == 1 ? wz[0] : wz[m];
      for (int64_t r = 0; r < p.R; ++r) wd[m * p.R + r] -= z;
    }
  }
  const size_t k = static_cast<size_t>(p.k);
  std::vector<std::vector<int64_t>> tab(k);
  for (size_t j = 0; j < k; ++j) {
    tab[j].resize(static_cast<size_t>(p.ker_sp[j] * p.out_sp[j]));
    for (int64_t kk = 0; kk < p.ker_sp[j]; ++kk)
      for (int64_t o = 0; o < p.out_sp[j]; ++o) {
        const int64_t i = o * p.strides[j] - p.pads[j] + kk * p.dilations[j];
        tab[j][kk * p.out_sp[j] + o] = i >= 0 && i < p.in_sp[j] ? i : -1;
      }
  }
  std::vector<int32_t> col(static_cast<size_t>(p.R * p.P));
  const int32_t *xd = xs.data<int32_t>(), *wd = ws.data<int32_t>();
  int32_t* od = out.data<int32_t>();
  for (int64_t n = 0; n < p.N; ++n) {
    for (int64_t g = 0; g < p.groups; ++g) {
      im2col_nd(xd + (n * p.C + g * p.Cg) * p.S, col.data(), p, tab);
      int32_t* og = od + (n * p.M + g * p.Mg) * p.P;
      const int32_t* wg = wd + g * p.Mg * p.R;
      parallel_for(0, p.Mg, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, p.R * p.P)),
                   [&](int64_t lo, int64_t hi) { gemm_i32(wg + lo * p.R, col.data(), og + lo * p.P, hi - lo, p.R, p.P); });
    }
  }
  return out;
}

}  // namespace

Tensor conv_integer(const Tensor& x, const Tensor& w, const Tensor& x_zero_point, const Tensor& w_zero_point,
                    const QuantConvOptions& opt) {
  const ConvPlan p = plan_conv(x, w, opt, "conv_integer");
  return conv_accumulate(x, w, x_zero_point, w_zero_point, p, "conv_integer");
}

Tensor qlinear_conv(const Tensor& x, const Tensor& x_scale, const Tensor& x_zero_point, const Tensor& w,
                    const Tensor& w_scale, const Tensor& w_zero_point, const Tensor& y_scale,
                    const Tensor& y_zero_point, const Tensor& bias, const QuantConvOptions& opt) {
  const char* op = "qlinear_conv";
  const ConvPlan p = plan_conv(x, w, opt, op);
  const float sx = static_cast<float>(per_tensor_scale(x_scale, op, "x_scale"));
  const float sy = static_cast<float>(per_tensor_scale(y_scale, op, "y_scale"));
  const std::vector<float> sw = scale_values(w_scale, op, "w_scale");
  KILN_CHECK(sw.size() == 1 || (w_scale.dim() == 1 && w_scale.numel() == p.M), op,
             ": w_scale must be one value or (", p.M, ") per output channel, got ", shape_str(w_scale.shape()));
  KILN_CHECK(!y_zero_point.defined() || y_zero_point.numel() == 1, op, ": y_zero_point must be one value, got ",
             shape_str(y_zero_point.shape()));
  const DType out_dtype = y_zero_point.defined() ? y_zero_point.dtype() : DType::u8;
  KILN_CHECK_TYPE(is_q8(out_dtype), op, ": y_zero_point must be u8 or i8, got ", dtype_name(out_dtype));
  std::vector<int32_t> b(static_cast<size_t>(p.M), 0);
  if (bias.defined()) {
    KILN_CHECK(bias.dim() == 1 && bias.numel() == p.M, op, ": bias must be (", p.M, "), got ", shape_str(bias.shape()));
    KILN_CHECK_TYPE(bias.dtype() == DType::i32, op, ": bias must be i32, got ", dtype_name(bias.dtype()));
    b = bias.to_vector<int32_t>();
  }
  Tensor acc = conv_accumulate(x, w, x_zero_point, w_zero_point, p, op);
  Tensor y = Tensor::empty(acc.shape(), out_dtype);
  if (y.numel() == 0) return y;
  const float zy = y_zero_point.defined() ? static_cast<float>(y_zero_point.item()) : 0.0f;
  const int32_t* c = acc.data<int32_t>();
  dispatch_q8(out_dtype, [&]<typename Q>() {
    Q* yd = y.data<Q>();
    parallel_for(0, p.N * p.M, std::max<int64_t>(1, (1 << 15) / p.P), [&](int64_t lo, int64_t hi) {
      for (int64_t plane = lo; plane < hi; ++plane) {
        const int64_t m = plane % p.M;
        // x_scale * w_scale / y_scale in f32, as ONNX Runtime computes its output scales.
        const float mult = sx * sw[sw.size() == 1 ? 0 : m] / sy;
        const uint32_t bm = static_cast<uint32_t>(b[m]);
        for (int64_t i = plane * p.P; i < (plane + 1) * p.P; ++i) {
          const int32_t v = static_cast<int32_t>(static_cast<uint32_t>(c[i]) + bm);
          yd[i] = saturate<Q>(std::nearbyint(static_cast<float>(v) * mult) + zy);
        }
      }
    });
  });
  return y;
}

}  // namespace kiln::ops
