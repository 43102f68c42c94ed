// softmax, log_softmax and the losses built on them. Softmax-family ops move the reduced dim last
// (a copy only when it is not already last) and run fused row kernels (cpu/row_kernels.h).
// cross_entropy is log_softmax + NLL in one pass with its own backward,
//   dlogits = s_r * (softmax - (1 - eps) onehot(target) - eps / C),
// and saves only the logits and one logsumexp per row.
#include <algorithm>
#include <cmath>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/autograd_record.h"
#include "kiln/ops/cpu/row_kernels.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/nn_ops.h"
#include "kiln/ops/reduce.h"
#include "kiln/ops/shape_ops.h"
#include "kiln/ops/trace.h"

namespace kiln::ops {

namespace {

void check_float(const char* op, const Tensor& t) {
  KILN_CHECK_TYPE(t.dtype() == DType::f32 || t.dtype() == DType::f64, op, ": expected f32 or f64, got ",
                  dtype_name(t.dtype()));
}

// t with dim d moved last, as a contiguous tensor (no copy when d is already last and t contiguous).
Tensor to_rows(const Tensor& t, int64_t d) {
  const int64_t nd = t.dim();
  if (d == nd - 1) return contiguous_raw(t);
  Shape s;
  Strides st;
  for (int64_t i = 0; i < nd; ++i)
    if (i != d) s.push_back(t.shape()[i]), st.push_back(t.strides()[i]);
  s.push_back(t.shape()[d]);
  st.push_back(t.strides()[d]);
  return contiguous_raw(t.as_strided(s, st, t.offset()));
}

// The inverse of to_rows: r (..., L) contiguous -> a contiguous tensor of `shape` with L at dim d.
Tensor from_rows(const Tensor& r, int64_t d, const Shape& shape) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (d == nd - 1) return r;
  const Strides rs = r.strides();
  Strides st(nd);
  for (int64_t i = 0, k = 0; i < nd; ++i) st[i] = i == d ? rs[nd - 1] : rs[k++];
  return contiguous_raw(r.as_strided(shape, st, r.offset()));
}

int64_t row_grain(int64_t n) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, n)); }

Tensor softmax_common(const Tensor& x, int64_t dim, bool log, const char* name) {
  check_float(name, x);
  if (x.dim() == 0) return reshape(softmax_common(reshape(x, {1}), 0, log, name), {});
  const int64_t d = wrap_dim(dim, x.dim(), name);
  const int64_t n = x.shape()[d];
  Tensor rows = to_rows(x, d);
  Tensor out_rows = Tensor::empty(rows.shape(), x.dtype());
  const int64_t R = n == 0 ? 0 : rows.numel() / n;
  dispatch_float(x.dtype(), name, [&]<typename T>() {
    const T* xp = rows.data<T>();
    T* yp = out_rows.data<T>();
    parallel_for(0, R, row_grain(n), [&](int64_t lo, int64_t hi) {
      cpu::softmax_rows<T>(xp + lo * n, yp + lo * n, hi - lo, n, T(1), log);
    });
  });
  Tensor out = from_rows(out_rows, d, x.shape());
  return record(name, {x}, out, [d, n, R, log, y_ = SavedTensor(out_rows, name), name](
                                    const Tensor& g, const std::vector<bool>&) {
    const Tensor& y = y_.get();
    Tensor grows = to_rows(g, d);
    Tensor gx = Tensor::empty(grows.shape(), g.dtype());
    dispatch_float(g.dtype(), name, [&]<typename T>() {
      const T* yp = y.data<T>();
      const T* gp = grows.data<T>();
      T* o = gx.data<T>();
      parallel_for(0, R, row_grain(n), [&](int64_t lo, int64_t hi) {
        cpu::softmax_backward_rows<T>(yp + lo * n, gp + lo * n, o + lo * n, hi - lo, n, log, T(1));
      });
    });
    return std::vector<Tensor>{from_rows(gx, d, g.shape())};
  });
}

// ---- class-index losses: shared validation and layout ----

struct ClassLayout {
  int64_t R = 0, C = 0;  // rows (one per target) and classes
  bool spatial = false;  // logits (N, C, d...): class dim moved last for the row kernels
  Shape in_shape, target_shape;
};

ClassLayout class_layout(const char* op, const Tensor& input, const Tensor& target) {
  check_float(op, input);
  KILN_CHECK_TYPE(is_integral(target.dtype()), op, ": target must hold integer class indices, got dtype ",
                  dtype_name(target.dtype()), "\nhelp: convert with .to(DType::i64)");
  KILN_CHECK(input.dim() >= 1, op, ": input must have a class dim, got a scalar");
  ClassLayout l;
  l.in_shape = input.shape();
  if (input.dim() == 1) {
    KILN_CHECK(target.dim() == 0, op, ": input ", shape_str(input.shape()), " (C) needs a 0-d target, got ",
               shape_str(target.shape()));
    l.C = input.shape()[0];
    l.R = 1;
    return l;
  }
  Shape expect = input.shape();
  expect.erase(expect.begin() + 1);
  KILN_CHECK(target.shape() == expect, op, ": target ", shape_str(target.shape()), " does not match input ",
             shape_str(input.shape()), " (expected target ", shape_str(expect), ": the input without its class dim 1)");
  l.C = input.shape()[1];
  l.R = numel(expect);
  l.spatial = input.dim() > 2;
  l.target_shape = expect;
  return l;
}

Tensor checked_targets(const char* op, const Tensor& target, int64_t C, int64_t ignore_index) {
  Tensor t = contiguous_raw(to_dtype_raw(target, DType::i64));
  const int64_t* p = t.data<int64_t>();
  for (int64_t i = 0; i < t.numel(); ++i)
    KILN_CHECK_INDEX(p[i] == ignore_index || (p[i] >= 0 && p[i] < C), op, ": target ", p[i], " at position ", i,
                     " is out of range for ", C, " classes (ignore_index is ", ignore_index, ")");
  return t;
}

int64_t count_kept(const Tensor& t, int64_t ignore_index) {
  const int64_t* p = t.data<int64_t>();
  int64_t n = 0;
  for (int64_t i = 0; i < t.numel(); ++i) n += p[i] != ignore_index;
  return n;
}

// Reduces per-row losses (R, contiguous) to the requested form; sums run in f64, in order.
Tensor reduce_rows(const Tensor& loss, Reduction red, double divisor, const Shape& none_shape) {
  if (red == Reduction::none) return loss.as_strided(none_shape, contiguous_strides(none_shape), loss.offset());
  Tensor out = Tensor::empty({}, loss.dtype());
  dispatch_float(loss.dtype(), "loss", [&]<typename T>() {
    const T* p = loss.data<T>();
    double s = 0;
    for (int64_t i = 0; i < loss.numel(); ++i) s += p[i];
    out.data<T>()[0] = static_cast<T>(red == Reduction::mean ? s / divisor : s);
  });
  return out;
}

// Per-row gradient scale from the output gradient: (values, stride) with stride 0 for a scalar.
template <typename T>
std::pair<std::vector<T>, int64_t> row_scale(const Tensor& g, Reduction red, double divisor, int64_t R) {
  if (red == Reduction::none) {
    Tensor gc = contiguous_raw(g);
    return {std::vector<T>(gc.data<T>(), gc.data<T>() + R), 1};
  }
  double v = g.item();
  if (red == Reduction::mean) v /= divisor;
  return {std::vector<T>{static_cast<T>(v)}, 0};
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  TracedOp trace_;
  return traced(trace_, "softmax", {x}, softmax_common(x, dim, false, "softmax"), {{"axis", dim}});
}
Tensor log_softmax(const Tensor& x, int64_t dim) {
  TracedOp trace_;
  return traced(trace_, "log_softmax", {x}, softmax_common(x, dim, true, "log_softmax"), {{"axis", dim}});
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& opt) {
  const ClassLayout l = class_layout("cross_entropy", logits, target);
  KILN_CHECK(opt.label_smoothing >= 0.0 && opt.label_smoothing <= 1.0,
             "cross_entropy: label_smoothing must be in [0, 1], got ", opt.label_smoothing);
  Tensor tgt = checked_targets("cross_entropy", target, l.C, opt.ignore_index);
  Tensor rows = l.spatial ? to_rows(logits, 1) : contiguous_raw(logits);
  Tensor loss = Tensor::empty({l.R}, logits.dtype()), lse = Tensor::empty({l.R}, logits.dtype());
  const int64_t C = l.C, R = l.R;
  dispatch_float(logits.dtype(), "cross_entropy", [&]<typename T>() {
    const T* xp = rows.data<T>();
    const int64_t* tp = tgt.data<int64_t>();
    T* lp = loss.data<T>();
    T* sp = lse.data<T>();
    parallel_for(0, R, row_grain(C), [&](int64_t lo, int64_t hi) {
      cpu::cross_entropy_rows<T>(xp + lo * C, tp + lo, lp + lo, sp + lo, hi - lo, C,
                                 static_cast<T>(opt.label_smoothing), opt.ignore_index);
    });
  });
  const double kept = static_cast<double>(count_kept(tgt, opt.ignore_index));
  Tensor out = reduce_rows(loss, opt.reduction, kept, l.target_shape);
  return record("cross_entropy", {logits}, out, [l, opt, kept, x_ = SavedTensor(rows, "cross_entropy"), tgt, lse](
                                                    const Tensor& g, const std::vector<bool>&) {
    const Tensor& x = x_.get();
    Tensor gx = Tensor::empty(x.shape(), x.dtype());
    dispatch_float(x.dtype(), "cross_entropy backward", [&]<typename T>() {
      // Not a structured binding: clang 14 (the fuzz build) cannot capture those in the lambda below.
      auto scaled = row_scale<T>(g, opt.reduction, kept, l.R);
      const auto& scale = scaled.first;
      const auto stride = scaled.second;
      const T* xp = x.data<T>();
      const int64_t* tp = tgt.data<int64_t>();
      const T* sp = lse.data<T>();
      T* o = gx.data<T>();
      const int64_t C = l.C;
      parallel_for(0, l.R, row_grain(C), [&](int64_t lo, int64_t hi) {
        cpu::cross_entropy_backward_rows<T>(xp + lo * C, tp + lo, sp + lo, scale.data() + lo * stride, stride,
                                            o + lo * C, hi - lo, C, static_cast<T>(opt.label_smoothing),
                                            opt.ignore_index);
      });
    });
    return std::vector<Tensor>{l.spatial ? from_rows(gx, 1, l.in_shape) : gx.as_strided(l.in_shape,
                                                                         contiguous_strides(l.in_shape), 0)};
  });
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, int64_t ignore_index, Reduction reduction) {
  const ClassLayout l = class_layout("nll_loss", log_probs, target);
  Tensor tgt = checked_targets("nll_loss", target, l.C, ignore_index);
  Tensor rows = l.spatial ? to_rows(log_probs, 1) : contiguous_raw(log_probs);
  Tensor loss = Tensor::empty({l.R}, log_probs.dtype());
  dispatch_float(log_probs.dtype(), "nll_loss", [&]<typename T>() {
    const T* xp = rows.data<T>();
    const int64_t* tp = tgt.data<int64_t>();
    for (int64_t r = 0; r < l.R; ++r) loss.data<T>()[r] = tp[r] == ignore_index ? T(0) : -xp[r * l.C + tp[r]];
  });
  const double kept = static_cast<double>(count_kept(tgt, ignore_index));
  Tensor out = reduce_rows(loss, reduction, kept, l.target_shape);
  return record("nll_loss", {log_probs}, out, [l, reduction, ignore_index, kept, tgt, dtype = log_probs.dtype()](
                                                  const Tensor& g, const std::vector<bool>&) {
    Shape rs{l.R, l.C};
    Tensor gx = Tensor::zeros(rs, dtype);
    dispatch_float(dtype, "nll_loss backward", [&]<typename T>() {
      auto [scale, stride] = row_scale<T>(g, reduction, kept, l.R);
      const int64_t* tp = tgt.data<int64_t>();
      T* o = gx.data<T>();
      for (int64_t r = 0; r < l.R; ++r)
        if (tp[r] != ignore_index) o[r * l.C + tp[r]] = -scale[r * stride];
    });
    if (l.spatial) {
      Shape moved = l.target_shape;
      moved.push_back(l.C);
      return std::vector<Tensor>{from_rows(gx.as_strided(moved, contiguous_strides(moved), 0), 1, l.in_shape)};
    }
    return std::vector<Tensor>{gx.as_strided(l.in_shape, contiguous_strides(l.in_shape), 0)};
  });
}

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  check_float("mse_loss", input);
  KILN_CHECK(input.shape() == target.shape(), "mse_loss: input ", shape_str(input.shape()), " and target ",
             shape_str(target.shape()), " must have the same shape");
  Tensor d = sub(input, target);
  Tensor sq = mul(d, d);
  switch (reduction) {
    case Reduction::none: return sq;
    case Reduction::sum: return sum(sq);
    case Reduction::mean: break;
  }
  KILN_CHECK(input.numel() > 0, "mse_loss: mean of an empty input");
  return mean(sq);
}

namespace {
// max(x, 0) - x t + log(1 + exp(-|x|)): never overflows, accurate for large |x|.
template <typename T>
inline T bce_logits(T x, T t) {
  return std::max(x, T(0)) - x * t + std::log1p(std::exp(-std::abs(x)));
}
template <typename T>
inline T stable_sigmoid(T x) {
  if (x >= 0) return T(1) / (T(1) + std::exp(-x));
  T e = std::exp(x);
  return e / (T(1) + e);
}
}  // namespace

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, Reduction reduction) {
  check_float("binary_cross_entropy_with_logits", logits);
  KILN_CHECK(logits.shape() == target.shape(), "binary_cross_entropy_with_logits: logits ",
             shape_str(logits.shape()), " and target ", shape_str(target.shape()), " must have the same shape");
  KILN_CHECK_TYPE(target.dtype() == logits.dtype(), "binary_cross_entropy_with_logits: target dtype ",
                  dtype_name(target.dtype()), " differs from logits ", dtype_name(logits.dtype()));
  Tensor xc = contiguous_raw(logits), tc = contiguous_raw(target);
  const int64_t n = xc.numel();
  Tensor loss = Tensor::empty({n}, logits.dtype());
  dispatch_float(logits.dtype(), "binary_cross_entropy_with_logits", [&]<typename T>() {
    const T* x = xc.data<T>();
    const T* t = tc.data<T>();
    T* o = loss.data<T>();
    parallel_for(0, n, 1 << 14, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) o[i] = bce_logits(x[i], t[i]);
    });
  });
  const double divisor = static_cast<double>(n);
  Tensor out = reduce_rows(loss, reduction, divisor, logits.shape());
  return record("binary_cross_entropy_with_logits", {logits, target}, out,
                [reduction, divisor, n, x_ = SavedTensor(xc, "bce_with_logits"), t_ = SavedTensor(tc, "bce_with_logits"),
                 shape = logits.shape()](const Tensor& g, const std::vector<bool>& need) {
                  const Tensor& xs = x_.get();
                  const Tensor& ts = t_.get();
                  Tensor gx = need[0] ? Tensor::empty(shape, xs.dtype()) : Tensor();
                  Tensor gt = need[1] ? Tensor::empty(shape, xs.dtype()) : Tensor();
                  dispatch_float(xs.dtype(), "binary_cross_entropy_with_logits backward", [&]<typename T>() {
                    auto [scale, stride] = row_scale<T>(g, reduction, divisor, n);
                    const T* x = xs.data<T>();
                    const T* t = ts.data<T>();
                    T* ox = need[0] ? gx.data<T>() : nullptr;
                    T* ot = need[1] ? gt.data<T>() : nullptr;
                    for (int64_t i = 0; i < n; ++i) {
                      const T s = scale[i * stride];
                      if (ox) ox[i] = s * (stable_sigmoid(x[i]) - t[i]);
                      if (ot) ot[i] = -s * x[i];
                    }
                  });
                  return std::vector<Tensor>{gx, gt};
                });
}

}  // namespace kiln::ops
