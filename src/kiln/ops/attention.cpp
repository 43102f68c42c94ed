// scaled_dot_product_attention as two batched GEMMs around a fused (scaled, causally masked)
// softmax row kernel. The probabilities P (B*H, T, S) are kept for backward:
//   dV = P^T dO,  dP = dO V^T,  dS = scale * P * (dP - rowsum(dP * P)),  dQ = dS K,  dK = dS^T Q.
// Masked entries of P are exactly 0, so they contribute nothing to any gradient.
#include <cmath>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/autograd_record.h"
#include "kiln/ops/cpu/gemm.h"
#include "kiln/ops/cpu/row_kernels.h"
#include "kiln/ops/nn_ops.h"

namespace kiln::ops {

namespace {


struct AttnDims {
  int64_t BH, T, S, D, Dv;
  bool causal;
  double scale;
};

int64_t row_grain(int64_t n) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(1, n)); }

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  const char* op = "scaled_dot_product_attention";
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
  const int64_t B = q.shape()[0], H = q.shape()[1];
  AttnDims a{B * H, q.shape()[2], k.shape()[2], q.shape()[3], v.shape()[3], causal,
             q.shape()[3] > 0 ? 1.0 / std::sqrt(static_cast<double>(q.shape()[3])) : 1.0};
  KILN_CHECK(a.S > 0 || a.T == 0, op, ": keys and values are empty (S = 0)");
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
