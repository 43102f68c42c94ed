// batch_norm and layer_norm with fused forward and backward kernels. Both save the per-group mean
// and 1/std from the forward pass, so backward is one pass of sums and one of outputs:
//   gx = w * rstd * (g - mean(g) - xhat * mean(g * xhat)),  gw = sum(g * xhat),  gb = sum(g)
// (batch norm in eval mode uses fixed statistics, so there gx = g * w * rstd).
#include <algorithm>
#include <cmath>

#include "kiln/core/grad_mode.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/autograd_record.h"
#include "kiln/ops/cpu/row_kernels.h"
#include "kiln/ops/nn_ops.h"
#include "kiln/ops/trace.h"

namespace kiln::ops {

namespace {

void check_param(const char* op, const char* what, const Tensor& t, const Shape& shape, DType dtype) {
  if (!t.defined()) return;
  KILN_CHECK(t.shape() == shape, op, ": ", what, " has shape ", shape_str(t.shape()), ", expected ",
             shape_str(shape));
  KILN_CHECK_TYPE(t.dtype() == dtype, op, ": ", what, " dtype ", dtype_name(t.dtype()), " differs from input ",
                  dtype_name(dtype));
}

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// ---- batch norm over x viewed as (N, C, S) ----

struct BnDims {
  int64_t N, C, S;
};

// Per-channel mean and biased variance, f64 accumulation, two passes.
template <typename T>
void bn_stats(const BnDims& d, const T* x, double* mean, double* var) {
  parallel_for(0, d.C, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, d.N * d.S)), [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      double s = 0;
      for (int64_t n = 0; n < d.N; ++n) {
        const T* p = x + (n * d.C + c) * d.S;
        for (int64_t i = 0; i < d.S; ++i) s += p[i];
      }
      const double m = s / static_cast<double>(d.N * d.S);
      double v = 0;
      for (int64_t n = 0; n < d.N; ++n) {
        const T* p = x + (n * d.C + c) * d.S;
        for (int64_t i = 0; i < d.S; ++i) v += (p[i] - m) * (p[i] - m);
      }
      mean[c] = m;
      var[c] = v / static_cast<double>(d.N * d.S);
    }
  });
}

// y = x * a[c] + b[c]
template <typename T>
void bn_apply(const BnDims& d, const T* x, const T* a, const T* b, T* y) {
  parallel_for(0, d.N * d.C, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, d.S)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t c = r % d.C;
      const T* p = x + r * d.S;
      T* q = y + r * d.S;
      const T ac = a[c], bc = b[c];
      for (int64_t i = 0; i < d.S; ++i) q[i] = p[i] * ac + bc;
    }
  });
}

// Per-channel sums of g and g * xhat, f64 accumulation.
template <typename T>
void bn_grad_sums(const BnDims& d, const T* x, const T* g, const T* mean, const T* rstd, double* sum_g,
                  double* sum_gx) {
  parallel_for(0, d.C, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, d.N * d.S)), [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      double sg = 0, sgx = 0;
      const T m = mean[c], rs = rstd[c];
      for (int64_t n = 0; n < d.N; ++n) {
        const T* xp = x + (n * d.C + c) * d.S;
        const T* gp = g + (n * d.C + c) * d.S;
        for (int64_t i = 0; i < d.S; ++i) {
          sg += gp[i];
          sgx += gp[i] * ((xp[i] - m) * rs);
        }
      }
      sum_g[c] = sg;
      sum_gx[c] = sgx;
    }
  });
}

// gx = k[c] * (g - mg[c] - xhat * mgx[c]) with xhat = (x - mean) * rstd.
template <typename T>
void bn_backward_apply(const BnDims& d, const T* x, const T* g, const T* mean, const T* rstd, const T* k,
                       const T* mg, const T* mgx, T* gx) {
  parallel_for(0, d.N * d.C, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, d.S)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t c = r % d.C;
      const T* xp = x + r * d.S;
      const T* gp = g + r * d.S;
      T* o = gx + r * d.S;
      const T m = mean[c], rs = rstd[c], kc = k[c], a = mg[c], b = mgx[c];
      for (int64_t i = 0; i < d.S; ++i) o[i] = kc * (gp[i] - a - (xp[i] - m) * rs * b);
    }
  });
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                  Tensor running_var, bool training, double momentum, double eps) {
  TracedOp trace_;
  KILN_CHECK(x.dim() >= 2, "batch_norm: expected input (N, C, ...) with at least 2 dims, got ", shape_str(x.shape()));
  KILN_CHECK_TYPE(x.dtype() == DType::f32 || x.dtype() == DType::f64, "batch_norm: expected f32 or f64, got ",
                  dtype_name(x.dtype()));
  BnDims d{x.shape()[0], x.shape()[1], 1};
  for (int64_t i = 2; i < x.dim(); ++i) d.S *= x.shape()[i];
  const Shape cs{d.C};
  check_param("batch_norm", "weight", weight, cs, x.dtype());
  check_param("batch_norm", "bias", bias, cs, x.dtype());
  for (const Tensor* r : {&running_mean, &running_var})
    if (r->defined()) {
      KILN_CHECK(r->shape() == cs, "batch_norm: running statistics have shape ", shape_str(r->shape()),
                 ", expected ", shape_str(cs));
      KILN_CHECK_TYPE(is_floating(r->dtype()), "batch_norm: running statistics must be floating point");
    }
  KILN_CHECK(running_mean.defined() == running_var.defined(), "batch_norm: give both running_mean and running_var "
             "or neither");
  KILN_CHECK(training || running_mean.defined(), "batch_norm: eval mode needs running_mean and running_var");
  const int64_t M = d.N * d.S;
  KILN_CHECK(!training || M > 1, "batch_norm: expected more than 1 value per channel when training, got input ",
             shape_str(x.shape()));

  Tensor xc = contiguous_raw(x);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  Tensor mean_t = Tensor::empty(cs, x.dtype()), rstd_t = Tensor::empty(cs, x.dtype());
  dispatch_float(x.dtype(), "batch_norm", [&]<typename T>() {
    std::vector<double> mean(d.C), var(d.C);
    if (training) {
      bn_stats<T>(d, xc.data<T>(), mean.data(), var.data());
      if (running_mean.defined()) {
        NoGradGuard no_grad;
        Tensor rm = to_dtype_raw(contiguous_raw(running_mean), DType::f64);
        Tensor rv = to_dtype_raw(contiguous_raw(running_var), DType::f64);
        Tensor nm = Tensor::empty(cs, DType::f64), nv = Tensor::empty(cs, DType::f64);
        const double unbias = static_cast<double>(M) / static_cast<double>(M - 1);
        for (int64_t c = 0; c < d.C; ++c) {
          nm.data<double>()[c] = (1 - momentum) * rm.data<double>()[c] + momentum * mean[c];
          nv.data<double>()[c] = (1 - momentum) * rv.data<double>()[c] + momentum * var[c] * unbias;
        }
        copy_into(running_mean, nm);
        copy_into(running_var, nv);
        running_mean.bump_version();
        running_var.bump_version();
      }
    } else {
      Tensor rm = to_dtype_raw(contiguous_raw(running_mean), DType::f64);
      Tensor rv = to_dtype_raw(contiguous_raw(running_var), DType::f64);
      std::copy(rm.data<double>(), rm.data<double>() + d.C, mean.begin());
      std::copy(rv.data<double>(), rv.data<double>() + d.C, var.begin());
    }
    Tensor wc = weight.defined() ? contiguous_raw(weight) : Tensor();
    Tensor bc = bias.defined() ? contiguous_raw(bias) : Tensor();
    std::vector<T> a(d.C), b(d.C);
    for (int64_t c = 0; c < d.C; ++c) {
      const double rs = 1.0 / std::sqrt(var[c] + eps);
      mean_t.data<T>()[c] = static_cast<T>(mean[c]);
      rstd_t.data<T>()[c] = static_cast<T>(rs);
      const double w = wc.defined() ? static_cast<double>(wc.data<T>()[c]) : 1.0;
      const double bb = bc.defined() ? static_cast<double>(bc.data<T>()[c]) : 0.0;
      a[c] = static_cast<T>(rs * w);
      b[c] = static_cast<T>(bb - mean[c] * rs * w);
    }
    bn_apply<T>(d, xc.data<T>(), a.data(), b.data(), out.data<T>());
  });

  std::vector<Tensor> inputs{x, weight.defined() ? weight : Tensor(), bias.defined() ? bias : Tensor()};
  std::vector<Tensor> used;
  for (const auto& t : inputs)
    if (t.defined()) used.push_back(t);
  if (!any_requires_grad(used))
    return traced(trace_, "batch_norm", {x, weight, bias, running_mean, running_var}, out,
                             {{"epsilon", eps}, {"training", int64_t{training ? 1 : 0}}});
  const bool has_w = weight.defined(), has_b = bias.defined();
  return traced(trace_, "batch_norm", {x, weight, bias, running_mean, running_var},
                           record("batch_norm", used, out,
                                  [d, training, has_w, has_b, x_ = SavedTensor(xc, "batch_norm"),
                                   w_ = has_w ? SavedTensor(contiguous_raw(weight), "batch_norm") : SavedTensor(),
                                   mean_t, rstd_t](const Tensor& g, const std::vector<bool>& need) {
                                    const Tensor& x = x_.get();
                                    Tensor gc = contiguous_raw(g);
                                    Tensor gx = need[0] ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
                                    Tensor gw = has_w && need[1] ? Tensor::empty({d.C}, x.dtype()) : Tensor();
                                    Tensor gb =
                                        has_b && need[has_w ? 2 : 1] ? Tensor::empty({d.C}, x.dtype()) : Tensor();
                                    dispatch_float(x.dtype(), "batch_norm backward", [&]<typename T>() {
                                      const T* mean = mean_t.data<T>();
                                      const T* rstd = rstd_t.data<T>();
                                      std::vector<double> sg(d.C), sgx(d.C);
                                      bn_grad_sums<T>(d, x.data<T>(), gc.data<T>(), mean, rstd, sg.data(), sgx.data());
                                      if (gw.defined())
                                        for (int64_t c = 0; c < d.C; ++c) gw.data<T>()[c] = static_cast<T>(sgx[c]);
                                      if (gb.defined())
                                        for (int64_t c = 0; c < d.C; ++c) gb.data<T>()[c] = static_cast<T>(sg[c]);
                                      if (!gx.defined()) return;
                                      const T* w = has_w ? w_.get().template data<T>() : nullptr;
                                      std::vector<T> k(d.C), mg(d.C), mgx(d.C);
                                      const double M = static_cast<double>(d.N * d.S);
                                      for (int64_t c = 0; c < d.C; ++c) {
                                        k[c] = static_cast<T>(rstd[c] * (w ? w[c] : T(1)));
                                        mg[c] = training ? static_cast<T>(sg[c] / M) : T(0);
                                        mgx[c] = training ? static_cast<T>(sgx[c] / M) : T(0);
                                      }
                                      bn_backward_apply<T>(d, x.data<T>(), gc.data<T>(), mean, rstd, k.data(),
                                                           mg.data(), mgx.data(), gx.data<T>());
                                    });
                                    std::vector<Tensor> grads{gx};
                                    if (has_w) grads.push_back(gw);
                                    if (has_b) grads.push_back(gb);
                                    return grads;
                                  }),
                           {{"epsilon", eps}, {"training", int64_t{training ? 1 : 0}}});
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  TracedOp trace_;
  const int64_t nd = static_cast<int64_t>(normalized_shape.size());
  KILN_CHECK(nd >= 1 && x.dim() >= nd &&
                 Shape(x.shape().end() - nd, x.shape().end()) == normalized_shape,
             "layer_norm: normalized_shape ", shape_str(normalized_shape), " must match the trailing dims of input ",
             shape_str(x.shape()));
  KILN_CHECK_TYPE(x.dtype() == DType::f32 || x.dtype() == DType::f64, "layer_norm: expected f32 or f64, got ",
                  dtype_name(x.dtype()));
  check_param("layer_norm", "weight", weight, normalized_shape, x.dtype());
  check_param("layer_norm", "bias", bias, normalized_shape, x.dtype());
  const int64_t D = numel(normalized_shape);
  const int64_t rows = D == 0 ? 0 : x.numel() / D;
  Tensor xc = contiguous_raw(x);
  Tensor wc = weight.defined() ? contiguous_raw(weight) : Tensor();
  Tensor bc = bias.defined() ? contiguous_raw(bias) : Tensor();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  Tensor mean = Tensor::empty({rows}, x.dtype()), rstd = Tensor::empty({rows}, x.dtype());
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, D));
  dispatch_float(x.dtype(), "layer_norm", [&]<typename T>() {
    const T* xp = xc.data<T>();
    T* yp = out.data<T>();
    T* mp = mean.data<T>();
    T* rp = rstd.data<T>();
    const T* w = ptr_or_null<T>(wc);
    const T* b = ptr_or_null<T>(bc);
    parallel_for(0, rows, grain, [&](int64_t lo, int64_t hi) {
      cpu::layer_norm_rows<T>(xp + lo * D, w, b, yp + lo * D, mp + lo, rp + lo, hi - lo, D, static_cast<T>(eps));
    });
  });

  std::vector<Tensor> used{x};
  if (weight.defined()) used.push_back(weight);
  if (bias.defined()) used.push_back(bias);
  if (!any_requires_grad(used))
    return traced(trace_, "layer_norm", {x, weight, bias}, out,
                             {{"axis", x.dim() - static_cast<int64_t>(normalized_shape.size())}, {"epsilon", eps}});
  const bool has_w = weight.defined(), has_b = bias.defined();
  return traced(
      trace_, "layer_norm", {x, weight, bias},
      record("layer_norm", used, out,
             [rows, D, grain, has_w, has_b, x_ = SavedTensor(xc, "layer_norm"),
              w_ = has_w ? SavedTensor(wc, "layer_norm") : SavedTensor(), mean, rstd,
              wshape = normalized_shape](const Tensor& g, const std::vector<bool>& need) {
               const Tensor& x = x_.get();
               Tensor gc = contiguous_raw(g);
               std::vector<Tensor> grads(need.size());
               const bool need_w = has_w && need[1], need_b = has_b && need[has_w ? 2 : 1];
               dispatch_float(x.dtype(), "layer_norm backward", [&]<typename T>() {
                 const T* xp = x.data<T>();
                 const T* gp = gc.data<T>();
                 const T* mp = mean.data<T>();
                 const T* rp = rstd.data<T>();
                 if (need[0]) {
                   Tensor gx = Tensor::empty(x.shape(), x.dtype());
                   const T* w = has_w ? w_.get().template data<T>() : nullptr;
                   T* o = gx.data<T>();
                   parallel_for(0, rows, grain, [&](int64_t lo, int64_t hi) {
                     cpu::layer_norm_backward_rows<T>(xp + lo * D, gp + lo * D, w, mp + lo, rp + lo, o + lo * D,
                                                      hi - lo, D);
                   });
                   grads[0] = gx;
                 }
                 if (!need_w && !need_b) return;
                 // Fixed row chunks (independent of the thread count), partials summed in order.
                 const int64_t chunk = std::max<int64_t>(64, (rows + 255) / 256);
                 const int64_t nchunks = num_chunks(rows, chunk);
                 std::vector<T> pw(need_w ? nchunks * D : 0, T(0)), pb(need_b ? nchunks * D : 0, T(0));
                 parallel_for(0, nchunks, 1, [&](int64_t lo, int64_t hi) {
                   for (int64_t c = lo; c < hi; ++c) {
                     const int64_t r0 = c * chunk, r1 = std::min(rows, r0 + chunk);
                     cpu::layer_norm_param_grad_rows<T>(xp + r0 * D, gp + r0 * D, mp + r0, rp + r0,
                                                        need_w ? pw.data() + c * D : nullptr,
                                                        need_b ? pb.data() + c * D : nullptr, r1 - r0, D);
                   }
                 });
                 auto reduce = [&](const std::vector<T>& part) {
                   Tensor t = Tensor::zeros(wshape, x.dtype());
                   T* o = t.data<T>();
                   for (int64_t c = 0; c < nchunks; ++c)
                     for (int64_t i = 0; i < D; ++i) o[i] += part[c * D + i];
                   return t;
                 };
                 if (need_w) grads[1] = reduce(pw);
                 if (need_b) grads[has_w ? 2 : 1] = reduce(pb);
               });
               return grads;
             }),
      {{"axis", x.dim() - static_cast<int64_t>(normalized_shape.size())}, {"epsilon", eps}});
}

}  // namespace kiln::ops
