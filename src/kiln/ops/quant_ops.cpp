// The elementwise and matrix-product quant ops (quant_ops.h): quantize_linear, dequantize_linear,
// dynamic_quantize_linear, matmul_integer and qlinear_matmul. The convolutions are in
// quant_conv.cpp; both share the helpers of quant_common.h.
#include "kiln/ops/quant_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kiln/core/error.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/quant_common.h"

namespace kiln::ops {

namespace quant {

void check_q8(const Tensor& t, const char* op, const char* what) {
  KILN_CHECK(t.defined(), op, ": ", what, " is missing");
  KILN_CHECK_TYPE(is_q8(t.dtype()), op, ": ", what, " must be u8 or i8, got ", dtype_name(t.dtype()));
}

void check_zero_point(const Tensor& zp, DType want, const char* op, const char* what) {
  if (!zp.defined()) return;
  KILN_CHECK_TYPE(zp.dtype() == want, op, ": ", what, " has dtype ", dtype_name(zp.dtype()), " but must be ",
                  dtype_name(want), " (the dtype of the tensor it belongs to)");
}

std::vector<float> scale_values(const Tensor& s, const char* op, const char* what) {
  KILN_CHECK(s.defined(), op, ": ", what, " is missing");
  KILN_CHECK_TYPE(is_floating(s.dtype()), op, ": ", what, " must be a float tensor, got ", dtype_name(s.dtype()));
  return s.to_vector<float>();
}

std::vector<int32_t> zero_point_values(const Tensor& zp, size_t n) {
  if (!zp.defined()) return std::vector<int32_t>(n, 0);
  return zp.to_vector<int32_t>();
}

double per_tensor_scale(const Tensor& s, const char* op, const char* what) {
  KILN_CHECK(s.defined() && s.numel() == 1, op, ": ", what, " must be one value (per tensor), got ",
             s.defined() ? shape_str(s.shape()) : "none");
  KILN_CHECK_TYPE(is_floating(s.dtype()), op, ": ", what, " must be a float tensor, got ", dtype_name(s.dtype()));
  return s.item();
}

Tensor broadcast_to(const Tensor& t, const Shape& target, const char* op, const char* what) {
  const size_t r = target.size();
  KILN_CHECK(t.dim() <= static_cast<int64_t>(r), op, ": ", what, " ", shape_str(t.shape()),
             " does not broadcast to ", shape_str(target));
  const size_t lead = r - t.shape().size();
  Strides st(r, 0);
  for (size_t i = lead; i < r; ++i) {
    const int64_t have = t.shape()[i - lead];
    KILN_CHECK(have == target[i] || have == 1, op, ": ", what, " ", shape_str(t.shape()), " does not broadcast to ",
               shape_str(target));
    st[i] = have == target[i] ? t.strides()[i - lead] : 0;
  }
  return t.detach().as_strided(target, st, t.offset());
}

Tensor to_i32(const Tensor& t) {
  Tensor out = Tensor::empty(t.shape(), DType::i32);
  if (out.numel() > 0) copy_into(out, t);
  return out;
}

Tensor shifted_i32(const Tensor& q, const Tensor& zp_view) {
  Tensor out = to_i32(q);
  if (!zp_view.defined() || out.numel() == 0) return out;
  Tensor z = to_i32(zp_view);
  int32_t* o = out.data<int32_t>();
  const int32_t* zd = z.data<int32_t>();
  for (int64_t i = 0; i < out.numel(); ++i) o[i] -= zd[i];
  return out;
}

void gemm_i32(const int32_t* a, const int32_t* b, int32_t* c, int64_t M, int64_t K, int64_t N) {
  // Unsigned arithmetic: wraps modulo 2^32 exactly where ONNX lets int32 accumulation overflow,
  // without signed-overflow UB; products of shifted 8-bit values need only 17 bits.
  for (int64_t m = 0; m < M; ++m) {
    uint32_t* crow = reinterpret_cast<uint32_t*>(c + m * N);
    std::fill(crow, crow + N, 0u);
    for (int64_t k = 0; k < K; ++k) {
      const uint32_t av = static_cast<uint32_t>(a[m * K + k]);
      if (av == 0) continue;
      const int32_t* brow = b + k * N;
      for (int64_t n = 0; n < N; ++n) crow[n] += av * static_cast<uint32_t>(brow[n]);
    }
  }
}

std::vector<int64_t> batch_offsets(const Tensor& view, size_t nbatch) {
  Shape batch(view.shape().begin(), view.shape().begin() + static_cast<int64_t>(nbatch));
  std::vector<int64_t> offs(static_cast<size_t>(numel(batch)), 0);
  std::vector<int64_t> idx(nbatch, 0);
  for (size_t i = 0; i < offs.size(); ++i) {
    int64_t o = 0;
    for (size_t d = 0; d < nbatch; ++d) o += idx[d] * view.strides()[d];
    offs[i] = o;
    for (size_t d = nbatch; d-- > 0;) {
      if (++idx[d] < batch[d]) break;
      idx[d] = 0;
    }
  }
  return offs;
}

}  // namespace quant

using namespace quant;

namespace {

// x viewed as (outer, channels, inner); channel c uses scale[c], zp[c] (channels = 1: per tensor).
template <typename F, typename Q>
void quantize_loop(const F* x, Q* y, const std::vector<float>& scale, const std::vector<int32_t>& zp, int64_t outer,
                   int64_t channels, int64_t inner) {
  parallel_for(0, outer * channels, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, inner)),
               [&](int64_t lo, int64_t hi) {
                 for (int64_t row = lo; row < hi; ++row) {
                   const int64_t c = row % channels;
                   const F s = static_cast<F>(scale[c]), z = static_cast<F>(zp[c]);
                   const F* xr = x + row * inner;
                   Q* yr = y + row * inner;
                   for (int64_t i = 0; i < inner; ++i) yr[i] = saturate<Q>(std::nearbyint(xr[i] / s) + z);
                 }
               });
}

template <typename Q, typename F>
void dequantize_loop(const Q* x, F* y, const std::vector<float>& scale, const std::vector<int32_t>& zp, int64_t outer,
                     int64_t channels, int64_t inner) {
  parallel_for(0, outer * channels, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, inner)),
               [&](int64_t lo, int64_t hi) {
                 for (int64_t row = lo; row < hi; ++row) {
                   const int64_t c = row % channels;
                   const F s = static_cast<F>(scale[c]);
                   const int32_t z = zp[c];
                   const Q* xr = x + row * inner;
                   F* yr = y + row * inner;
                   for (int64_t i = 0; i < inner; ++i) yr[i] = static_cast<F>(static_cast<int32_t>(xr[i]) - z) * s;
                 }
               });
}

struct AxisSplit {
  int64_t outer = 1, channels = 1, inner = 1;
};

// Per tensor (scale has one element) or per axis (1-d scale of x.shape[axis]).
AxisSplit split_for(const Tensor& x, const Tensor& scale, const Tensor& zp, int64_t axis, const char* op,
                    const char* scale_name, const char* zp_name) {
  AxisSplit s;
  s.inner = x.numel();
  KILN_CHECK(!zp.defined() || zp.shape() == scale.shape() || (zp.numel() == 1 && scale.numel() == 1), op, ": ",
             zp_name, " ", shape_str(zp.shape()), " and ", scale_name, " ", shape_str(scale.shape()),
             " must have the same shape");
  if (scale.numel() == 1) return s;
  KILN_CHECK(scale.dim() == 1 && x.dim() >= 1, op, ": ", scale_name, " must be one value or 1-d (per axis), got ",
             shape_str(scale.shape()), " for input ", shape_str(x.shape()));
  const int64_t a = wrap_dim(axis, x.dim(), op);
  KILN_CHECK(scale.shape()[0] == x.shape()[a], op, ": per-axis ", scale_name, " has ", scale.shape()[0],
             " values but axis ", axis, " of input ", shape_str(x.shape()), " has size ", x.shape()[a]);
  s.outer = 1, s.inner = 1, s.channels = x.shape()[a];
  for (int64_t d = 0; d < a; ++d) s.outer *= x.shape()[d];
  for (int64_t d = a + 1; d < x.dim(); ++d) s.inner *= x.shape()[d];
  return s;
}

}  // namespace

Tensor quantize_linear(const Tensor& x, const Tensor& y_scale, const Tensor& y_zero_point, int64_t axis) {
  KILN_CHECK(x.defined(), "quantize_linear: x is missing");
  KILN_CHECK_TYPE(is_floating(x.dtype()) || x.dtype() == DType::i32,
                  "quantize_linear: x must be f32, f64, f16, bf16 or i32, got ", dtype_name(x.dtype()));
  const std::vector<float> scale = scale_values(y_scale, "quantize_linear", "y_scale");
  const DType out_dtype = y_zero_point.defined() ? y_zero_point.dtype() : DType::u8;
  KILN_CHECK_TYPE(is_q8(out_dtype), "quantize_linear: y_zero_point must be u8 or i8, got ", dtype_name(out_dtype));
  const AxisSplit sp = split_for(x, y_scale, y_zero_point, axis, "quantize_linear", "y_scale", "y_zero_point");
  const std::vector<int32_t> zp = zero_point_values(y_zero_point, scale.size());
  Tensor y = Tensor::empty(x.shape(), out_dtype);
  if (y.numel() == 0) return y;
  const Tensor xc = x.dtype() == DType::f64 ? contiguous_raw(x) : contiguous_raw(to_dtype_raw(x, DType::f32));
  dispatch_q8(out_dtype, [&]<typename Q>() {
    if (xc.dtype() == DType::f64)
      quantize_loop<double, Q>(xc.data<double>(), y.data<Q>(), scale, zp, sp.outer, sp.channels, sp.inner);
    else
      quantize_loop<float, Q>(xc.data<float>(), y.data<Q>(), scale, zp, sp.outer, sp.channels, sp.inner);
  });
  return y;
}

Tensor dequantize_linear(const Tensor& x, const Tensor& x_scale, const Tensor& x_zero_point, int64_t axis) {
  KILN_CHECK(x.defined(), "dequantize_linear: x is missing");
  KILN_CHECK_TYPE(is_q8(x.dtype()) || x.dtype() == DType::i32, "dequantize_linear: x must be u8, i8 or i32, got ",
                  dtype_name(x.dtype()));
  check_zero_point(x_zero_point, x.dtype(), "dequantize_linear", "x_zero_point");
  const std::vector<float> scale = scale_values(x_scale, "dequantize_linear", "x_scale");
  const AxisSplit sp = split_for(x, x_scale, x_zero_point, axis, "dequantize_linear", "x_scale", "x_zero_point");
  const std::vector<int32_t> zp = zero_point_values(x_zero_point, scale.size());
  if (x.dtype() == DType::i32)
    KILN_CHECK(std::all_of(zp.begin(), zp.end(), [](int32_t z) { return z == 0; }),
               "dequantize_linear: an i32 input has no zero point (it must be 0)");
  const DType out_dtype = x_scale.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor y = Tensor::empty(x.shape(), out_dtype);
  if (y.numel() == 0) return y;
  const Tensor xc = contiguous_raw(x);
  auto run = [&]<typename Q>() {
    if (out_dtype == DType::f64)
      dequantize_loop<Q, double>(xc.data<Q>(), y.data<double>(), scale, zp, sp.outer, sp.channels, sp.inner);
    else
      dequantize_loop<Q, float>(xc.data<Q>(), y.data<float>(), scale, zp, sp.outer, sp.channels, sp.inner);
  };
  if (x.dtype() == DType::i32)
    run.template operator()<int32_t>();
  else
    dispatch_q8(x.dtype(), run);
  return y;
}

DynamicQuantized dynamic_quantize_linear(const Tensor& x) {
  KILN_CHECK(x.defined(), "dynamic_quantize_linear: x is missing");
  KILN_CHECK_TYPE(x.dtype() == DType::f32, "dynamic_quantize_linear: x must be f32, got ", dtype_name(x.dtype()));
  const Tensor xc = contiguous_raw(x);
  const float* p = xc.data<float>();
  // The range always includes 0 so that 0 is exactly representable (padding, ReLU outputs).
  float lo = 0.0f, hi = 0.0f;
  for (int64_t i = 0; i < xc.numel(); ++i) {
    lo = std::min(lo, p[i]);
    hi = std::max(hi, p[i]);
  }
  const float scale = hi == lo ? 1.0f : (hi - lo) / 255.0f;
  const float zp = std::nearbyint(std::clamp(0.0f - lo / scale, 0.0f, 255.0f));
  DynamicQuantized r;
  r.y_scale = Tensor::scalar(scale, DType::f32);
  r.y_zero_point = Tensor::scalar(zp, DType::u8);
  r.y = quantize_linear(xc, r.y_scale, r.y_zero_point);
  return r;
}

// ---------------------------------------------------------------- matmul_integer, qlinear_matmul

namespace {

// The shifted operands of an integer matmul, (a - a_zp) and (b - b_zp) in i32, with the shapes
// numpy.matmul gives them (1-d operands promoted), and the per-row / per-column parameter targets.
struct IntMatmul {
  Tensor a, b;       // i32, (ba..., M, K) and (bb..., K, N), contiguous
  Shape batch;       // broadcast batch dims
  int64_t M = 0, K = 0, N = 0;
  Shape out_shape;   // after removing the promoted dims of 1-d operands
};

// A per-row (a side) or per-column (b side) parameter as a view of `target` = the operand's
// shape with its K dim set to 1.
Tensor side_param(const Tensor& p, const Shape& operand, bool row_side, const char* op, const char* what) {
  Shape target = operand;
  target[target.size() - (row_side ? 1 : 2)] = 1;
  const int64_t len = row_side ? operand[operand.size() - 2] : operand.back();
  if (p.numel() == 1) return broadcast_to(p.detach().as_strided({}, {}, p.offset()), target, op, what);
  if (p.dim() == 1 && p.numel() == len)
    return broadcast_to(p.detach().as_strided(row_side ? Shape{len, 1} : Shape{1, len},
                                              row_side ? Strides{p.stride(0), 0} : Strides{0, p.stride(0)}, p.offset()),
                        target, op, what);
  return broadcast_to(p, target, op, what);
}

IntMatmul plan_int_matmul(const Tensor& a_in, const Tensor& b_in, const Tensor& azp, const Tensor& bzp,
                          const char* op) {
  check_q8(a_in, op, "a");
  check_q8(b_in, op, "b");
  check_zero_point(azp, a_in.dtype(), op, "a_zero_point");
  check_zero_point(bzp, b_in.dtype(), op, "b_zero_point");
  KILN_CHECK(a_in.dim() >= 1 && b_in.dim() >= 1, op, ": both operands need at least 1 dim, got ",
             shape_str(a_in.shape()), " @ ", shape_str(b_in.shape()));
  Tensor a = a_in.dim() == 1 ? a_in.detach().as_strided({1, a_in.shape()[0]}, {0, a_in.stride(0)}, a_in.offset())
                             : a_in;
  Tensor b = b_in.dim() == 1 ? b_in.detach().as_strided({b_in.shape()[0], 1}, {b_in.stride(0), 0}, b_in.offset())
                             : b_in;
  IntMatmul r;
  r.M = a.shape()[a.dim() - 2], r.K = a.shape()[a.dim() - 1], r.N = b.shape()[b.dim() - 1];
  KILN_CHECK(b.shape()[b.dim() - 2] == r.K, op, ": inner dimensions differ: ", shape_str(a_in.shape()), " @ ",
             shape_str(b_in.shape()));
  r.batch = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2), Shape(b.shape().begin(), b.shape().end() - 2),
                             op);
  Tensor az = azp.defined() ? side_param(azp, a.shape(), true, op, "a_zero_point") : Tensor();
  Tensor bz = bzp.defined() ? side_param(bzp, b.shape(), false, op, "b_zero_point") : Tensor();
  r.a = shifted_i32(a, az.defined() ? broadcast_to(az, a.shape(), op, "a_zero_point") : Tensor());
  r.b = shifted_i32(b, bz.defined() ? broadcast_to(bz, b.shape(), op, "b_zero_point") : Tensor());
  r.out_shape = r.batch;
  if (a_in.dim() > 1) r.out_shape.push_back(r.M);
  if (b_in.dim() > 1) r.out_shape.push_back(r.N);
  return r;
}

// acc (batch..., M, N) i32 contiguous.
Tensor run_int_matmul(const IntMatmul& p) {
  Shape full = p.batch;
  full.push_back(p.M);
  full.push_back(p.N);
  Tensor acc = Tensor::empty(full, DType::i32);
  if (acc.numel() == 0) return acc;
  Shape sa = p.batch, sb = p.batch;
  sa.insert(sa.end(), {p.M, p.K});
  sb.insert(sb.end(), {p.K, p.N});
  const std::vector<int64_t> oa = batch_offsets(broadcast_to(p.a, sa, "matmul_integer", "a"), p.batch.size());
  const std::vector<int64_t> ob = batch_offsets(broadcast_to(p.b, sb, "matmul_integer", "b"), p.batch.size());
  const int32_t *a = p.a.data<int32_t>(), *b = p.b.data<int32_t>();
  int32_t* c = acc.data<int32_t>();
  const int64_t M = p.M, K = p.K, N = p.N;
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, K * N));
  parallel_for(0, static_cast<int64_t>(oa.size()) * M, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t bi = row / M, m = row % M;
      gemm_i32(a + oa[bi] + m * K, b + ob[bi], c + (bi * M + m) * N, 1, K, N);
    }
  });
  return acc;
}

}  // namespace

Tensor matmul_integer(const Tensor& a, const Tensor& b, const Tensor& a_zero_point, const Tensor& b_zero_point) {
  const IntMatmul p = plan_int_matmul(a, b, a_zero_point, b_zero_point, "matmul_integer");
  Tensor acc = run_int_matmul(p);
  return acc.detach().as_strided(p.out_shape, contiguous_strides(p.out_shape), 0);
}

Tensor qlinear_matmul(const Tensor& a, const Tensor& a_scale, const Tensor& a_zero_point, const Tensor& b,
                      const Tensor& b_scale, const Tensor& b_zero_point, const Tensor& y_scale,
                      const Tensor& y_zero_point) {
  const char* op = "qlinear_matmul";
  const IntMatmul p = plan_int_matmul(a, b, a_zero_point, b_zero_point, op);
  scale_values(a_scale, op, "a_scale");
  scale_values(b_scale, op, "b_scale");
  const double sy = per_tensor_scale(y_scale, op, "y_scale");
  KILN_CHECK(!y_zero_point.defined() || y_zero_point.numel() == 1, op, ": y_zero_point must be one value, got ",
             shape_str(y_zero_point.shape()));
  const DType out_dtype = y_zero_point.defined() ? y_zero_point.dtype() : DType::u8;
  KILN_CHECK_TYPE(is_q8(out_dtype), op, ": y_zero_point must be u8 or i8, got ", dtype_name(out_dtype));
  const float zy = y_zero_point.defined() ? static_cast<float>(y_zero_point.item()) : 0.0f;
  Tensor acc = run_int_matmul(p);
  // Per-(batch, row) and per-(batch, column) scales, in f32 like the tensors they come from.
  const Shape a2 = a.dim() == 1 ? Shape{1, a.shape()[0]} : a.shape();
  const Shape b2 = b.dim() == 1 ? Shape{b.shape()[0], 1} : b.shape();
  Shape rows = p.batch, cols = p.batch;
  rows.insert(rows.end(), {p.M, 1});
  cols.insert(cols.end(), {1, p.N});
  const std::vector<float> sa =
      broadcast_to(side_param(a_scale, a2, true, op, "a_scale"), rows, op, "a_scale").to_vector<float>();
  const std::vector<float> sb =
      broadcast_to(side_param(b_scale, b2, false, op, "b_scale"), cols, op, "b_scale").to_vector<float>();
  Tensor y = Tensor::empty(p.out_shape, out_dtype);
  if (y.numel() == 0) return y;
  const int32_t* c = acc.data<int32_t>();
  const float fy = static_cast<float>(sy);
  const int64_t M = p.M, N = p.N;
  dispatch_q8(out_dtype, [&]<typename Q>() {
    Q* yd = y.data<Q>();
    for (int64_t row = 0; row < acc.numel() / N; ++row) {
      const int64_t bi = row / M;
      for (int64_t n = 0; n < N; ++n) {
        const float mult = sa[row] * sb[bi * N + n] / fy;
        yd[row * N + n] = saturate<Q>(std::nearbyint(static_cast<float>(c[row * N + n]) * mult) + zy);
      }
    }
  });
  return y;
}

}  // namespace kiln::ops
