// scaled_dot_product_attention. f32 runs the fused, tiled kernel of ops/cpu/flash_attention.h
// (online softmax; saves only O and the per-row log-sum-exp, never a (T, S) matrix). f64 and empty
// shapes run the materialising path below, which is also the reference the fused one is tested
// and benchmarked against: two batched GEMMs around a fused (scaled, causally masked) softmax, the
// probabilities P (B*H, T, S) kept for backward:
//   dV = P^T dO,  dP = dO V^T,  dS = scale * P * (dP - rowsum(dP * P)),  dQ = dS K,  dK = dS^T Q.
// Masked entries of P are exactly 0, so they contribute nothing to any gradient.
#include <algorithm>
#include <array>
#include <cmath>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/autograd_record.h"
#include "kiln/ops/cpu/flash_attention.h"
#include "kiln/ops/cpu/gemm.h"
#include "kiln/ops/cpu/row_kernels.h"
#include "kiln/ops/nn_ops.h"
#include "kiln/ops/trace.h"

namespace kiln::ops {

namespace {

constexpr const char* kOp = "scaled_dot_product_attention";

struct MatDims {
  int64_t BH, T, S, D, Dv;
  bool causal;
  double scale;
};

int64_t row_grain(int64_t n) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(1, n)); }

double default_scale(int64_t D) { return D > 0 ? 1.0 / std::sqrt(static_cast<double>(D)) : 1.0; }

void check_attention(const Tensor& q, const Tensor& k, const Tensor& v) {
  const char* op = kOp;
  KILN_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, ": q, k, v must be 4-d (B, H, T, D), got ",
             shape_str(q.shape()), ", ", shape_str(k.shape()), ", ", shape_str(v.shape()));
  KILN_CHECK_TYPE(q.dtype() == k.dtype() && q.dtype() == v.dtype() &&
                      (q.dtype() == DType::f32 || q.dtype() == DType::f64),
                  op, ": expected q, k, v all f32 or all f64, got ", dtype_name(q.dtype()), ", ",
                  dtype_name(k.dtype()), ", ", dtype_name(v.dtype()));
  KILN_CHECK(q.shape()[0] == k.shape()[0] && q.shape()[0] == v.shape()[0] && q.shape()[1] == k.shape()[1] &&
                 q.shape()[1] == v.shape()[1],
             op, ": batch and head dims differ: q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ",
             shape_str(v.shape()));
  KILN_CHECK(q.shape()[3] == k.shape()[3], op, ": q ", shape_str(q.shape()), " and k ", shape_str(k.shape()),
             " must share the head size D");
  KILN_CHECK(k.shape()[2] == v.shape()[2], op, ": k ", shape_str(k.shape()), " and v ", shape_str(v.shape()),
             " must share the sequence length");
  KILN_CHECK(k.shape()[2] > 0 || q.shape()[2] == 0, op, ": keys and values are empty (S = 0)");
}

// The fused kernel reads any (B, H, T, D) strides as long as the last dim is dense.
Tensor dense_last(const Tensor& t) { return t.stride(3) == 1 || t.size(3) <= 1 ? t : contiguous_raw(t); }

cpu::AttnIn in_view(const Tensor& t) { return {t.data<float>(), t.stride(0), t.stride(1), t.stride(2)}; }
cpu::AttnOut out_view(const Tensor& t) {
  if (!t.defined()) return {nullptr, 0, 0, 0};
  return {t.data<float>(), t.stride(0), t.stride(1), t.stride(2)};
}

// A fresh f32 (B, H, rows, cols) tensor laid out in memory like `like`: dims 0-2 ordered by
// like's strides, the last dim dense. For the head-split views of a (B, T, 3C) projection this is
// (B, T, H, D) memory, so the transformer's permute + reshape back to (B, T, C) is a free view
// and the gradients reach the projection without a transposing copy.
Tensor empty_in_layout(const Shape& shape, const Tensor& like) {
  std::array<int, 3> order{0, 1, 2};
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return like.stride(a) > like.stride(b); });
  Shape mem{shape[order[0]], shape[order[1]], shape[order[2]], shape[3]};
  Strides st(4);
  st[3] = 1;
  int64_t s = shape[3];
  for (int i = 2; i >= 0; --i) {
    st[order[i]] = s;
    s *= shape[order[i]];
  }
  return Tensor::empty(mem, DType::f32).as_strided(shape, st, 0);
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  TracedOp trace_;
  check_attention(q, k, v);
  const int64_t B = q.shape()[0], H = q.shape()[1], T = q.shape()[2], S = k.shape()[2], D = q.shape()[3],
                Dv = v.shape()[3];
  if (q.dtype() != DType::f32 || B == 0 || H == 0 || T == 0 || S == 0 || D == 0 || Dv == 0)
    return traced(trace_, "scaled_dot_product_attention", {q, k, v},
                             scaled_dot_product_attention_materialized(q, k, v, causal),
                             {{"causal", int64_t{causal ? 1 : 0}}});
  const Tensor qd = dense_last(q), kd = dense_last(k), vd = dense_last(v);
  const cpu::AttnDims dims{B, H, T, S, D, Dv, causal, static_cast<float>(default_scale(D))};
  Tensor out = empty_in_layout({B, H, T, Dv}, qd);  // (B, H, T, Dv)
  Tensor lse = Tensor::empty({B * H, T});           // (B*H, T) log-sum-exp of each score row
  cpu::flash_attention_forward(cpu::flash_attention_kernels(),
                               {dims, in_view(qd), in_view(kd), in_view(vd), out_view(out), lse.data<float>()});
  if (!any_requires_grad({q, k, v}))
    return traced(trace_, "scaled_dot_product_attention", {q, k, v}, out,
                             {{"causal", int64_t{causal ? 1 : 0}}});
  return traced(
      trace_, "scaled_dot_product_attention", {q, k, v},
      record(kOp, {q, k, v}, out,
             [dims, q_ = SavedTensor(qd, kOp), k_ = SavedTensor(kd, kOp), v_ = SavedTensor(vd, kOp),
              o_ = SavedTensor(out, kOp), lse](const Tensor& g, const std::vector<bool>& need) {
               const Tensor &q = q_.get(), &k = k_.get(), &v = v_.get(), &o = o_.get();
               const Tensor gd = dense_last(g);
               Tensor gq = need[0] ? empty_in_layout(q.shape(), q) : Tensor();
               Tensor gk = need[1] ? empty_in_layout(k.shape(), k) : Tensor();
               Tensor gv = need[2] ? empty_in_layout(v.shape(), v) : Tensor();
               cpu::flash_attention_backward(cpu::flash_attention_kernels(),
                                             {dims, in_view(q), in_view(k), in_view(v), in_view(o), in_view(gd),
                                              lse.data<float>(), out_view(gq), out_view(gk), out_view(gv)});
               return std::vector<Tensor>{gq, gk, gv};
             }),
      {{"causal", int64_t{causal ? 1 : 0}}});
}

Tensor scaled_dot_product_attention_materialized(const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  check_attention(q, k, v);
  const char* op = kOp;
  const int64_t B = q.shape()[0], H = q.shape()[1];
  MatDims a{B * H, q.shape()[2], k.shape()[2], q.shape()[3], v.shape()[3], causal, default_scale(q.shape()[3])};
  Tensor qc = contiguous_raw(q), kc = contiguous_raw(k), vc = contiguous_raw(v);
  Tensor probs = Tensor::empty({a.BH, a.T, a.S}, q.dtype());   // (B*H, T, S)
  Tensor out = Tensor::empty({B, H, a.T, a.Dv}, q.dtype());    // (B, H, T, Dv)
  if (out.numel() > 0 || probs.numel() > 0)
    dispatch_float(q.dtype(), op, [&]<typename T>() {
      T* P = probs.data<T>();
      cpu::gemm<T>(a.BH, a.T, a.S, a.D, {qc.data<T>(), a.T * a.D, a.D, 1}, {kc.data<T>(), a.S * a.D, 1, a.D}, P);
      parallel_for(0, a.BH * a.T, row_grain(a.S), [&](int64_t lo, int64_t hi) {
        cpu::softmax_rows<T>(P + lo * a.S, P + lo * a.S, hi - lo, a.S, static_cast<T>(a.scale), false,
                             a.causal ? a.T : 0, lo);
      });
      cpu::gemm<T>(a.BH, a.T, a.Dv, a.S, {P, a.T * a.S, a.S, 1}, {vc.data<T>(), a.S * a.Dv, a.Dv, 1}, out.data<T>());
    });
  if (!any_requires_grad({q, k, v})) return out;
  return record(op, {q, k, v}, out, [a, q_ = SavedTensor(qc, op), k_ = SavedTensor(kc, op), v_ = SavedTensor(vc, op),
                                     probs](const Tensor& g, const std::vector<bool>& need) {
    const Tensor& q = q_.get();
    const Tensor& k = k_.get();
    const Tensor& v = v_.get();
    Tensor gc = contiguous_raw(g);
    Tensor gq = need[0] ? Tensor::empty(q.shape(), q.dtype()) : Tensor();
    Tensor gk = need[1] ? Tensor::empty(k.shape(), k.dtype()) : Tensor();
    Tensor gv = need[2] ? Tensor::empty(v.shape(), v.dtype()) : Tensor();
    dispatch_float(q.dtype(), "scaled_dot_product_attention backward", [&]<typename T>() {
      const T* P = probs.data<T>();
      const T* dO = gc.data<T>();
      if (need[2])
        cpu::gemm<T>(a.BH, a.S, a.Dv, a.T, {P, a.T * a.S, 1, a.S}, {dO, a.T * a.Dv, a.Dv, 1}, gv.data<T>());
      if (!need[0] && !need[1]) return;
      Tensor dS = Tensor::empty({a.BH, a.T, a.S}, q.dtype());
      T* ds = dS.data<T>();
      cpu::gemm<T>(a.BH, a.T, a.S, a.Dv, {dO, a.T * a.Dv, a.Dv, 1}, {v.data<T>(), a.S * a.Dv, 1, a.Dv}, ds);
      parallel_for(0, a.BH * a.T, row_grain(a.S), [&](int64_t lo, int64_t hi) {
        cpu::softmax_backward_rows<T>(P + lo * a.S, ds + lo * a.S, ds + lo * a.S, hi - lo, a.S, false,
                                      static_cast<T>(a.scale));
      });
      if (need[0])
        cpu::gemm<T>(a.BH, a.T, a.D, a.S, {ds, a.T * a.S, a.S, 1}, {k.data<T>(), a.S * a.D, a.D, 1}, gq.data<T>());
      if (need[1])
        cpu::gemm<T>(a.BH, a.S, a.D, a.T, {ds, a.T * a.S, 1, a.S}, {q.data<T>(), a.T * a.D, a.D, 1}, gk.data<T>());
    });
    return std::vector<Tensor>{gq, gk, gv};
  });
}

}  // namespace kiln::ops
