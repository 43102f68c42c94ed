// Row kernels for softmax, layer norm and cross entropy (see row_kernels.h). Each kernel body is an
// always-inline template; the f32 entry points carry target_clones so GCC emits an AVX2 build and a
// baseline build of the same loops. Sums use 8 independent lanes combined in a fixed order, which
// lets GCC vectorise them without -ffast-math and keeps results bitwise stable.
// no-trapping-math lets GCC if-convert vm_exp's range clamps, so the exp loops vectorise.
#pragma GCC optimize("no-trapping-math")

#include "kiln/ops/cpu/row_kernels.h"

#include <cmath>
#include <limits>
#include <type_traits>

#include "kiln/ops/cpu/vec_math.h"

#define KILN_CLONES __attribute__((target_clones("avx2", "default")))
#define KILN_INLINE __attribute__((always_inline)) inline

namespace kiln::ops::cpu {

namespace {

constexpr int kLanes = 8;

template <typename T>
KILN_INLINE T exp_(T x) {
  if constexpr (std::is_same_v<T, float>)
    return vm_exp(x);
  else
    return std::exp(x);
}

template <typename T>
KILN_INLINE T log_(T x) {
  if constexpr (std::is_same_v<T, float>)
    return vm_log(x);
  else
    return std::log(x);
}

template <typename T>
KILN_INLINE T lanes_sum(const T* acc) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <typename T>
KILN_INLINE T row_sum(const T* x, int64_t n) {
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += x[i + j];
  for (int j = 0; i < n; ++i, ++j) acc[j] += x[i];
  return lanes_sum(acc);
}

template <typename T>
KILN_INLINE T row_dot(const T* x, const T* y, int64_t n) {
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += x[i + j] * y[i + j];
  for (int j = 0; i < n; ++i, ++j) acc[j] += x[i] * y[i];
  return lanes_sum(acc);
}

template <typename T>
KILN_INLINE T row_max(const T* x, int64_t n) {
  T acc[kLanes];
  for (int j = 0; j < kLanes; ++j) acc[j] = -std::numeric_limits<T>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  for (int j = 0; i < n; ++i, ++j) acc[j] = x[i] > acc[j] ? x[i] : acc[j];
  T m = acc[0];
  for (int j = 1; j < kLanes; ++j) m = acc[j] > m ? acc[j] : m;
  return m;
}

// e[i] = exp(s * x[i] - shift); returns sum(e).
template <typename T>
KILN_INLINE T exp_shifted(const T* x, T* e, int64_t n, T s, T shift) {
  for (int64_t i = 0; i < n; ++i) e[i] = exp_(s * x[i] - shift);
  return row_sum(e, n);
}

template <typename T>
KILN_INLINE void softmax_impl(const T* x, T* y, int64_t rows, int64_t n, T scale, bool log, int64_t period,
                              int64_t row0) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    int64_t valid = period > 0 ? std::min<int64_t>((row0 + r) % period + 1, n) : n;
    T shift = scale * row_max(xr, valid);
    if (!log) {
      // x and y may alias: exp_shifted reads x[i] before writing y[i] at the same index only.
      T inv = T(1) / exp_shifted(xr, yr, valid, scale, shift);
      for (int64_t i = 0; i < valid; ++i) yr[i] *= inv;
      for (int64_t i = valid; i < n; ++i) yr[i] = T(0);
    } else {
      T s = T(0);
      {
        T acc[kLanes] = {};
        int64_t i = 0;
        for (; i + kLanes <= valid; i += kLanes)
          for (int j = 0; j < kLanes; ++j) acc[j] += exp_(scale * xr[i + j] - shift);
        for (int j = 0; i < valid; ++i, ++j) acc[j] += exp_(scale * xr[i] - shift);
        s = lanes_sum(acc);
      }
      // (x - max) - log(s), not x - (max + log(s)): the sum would round away log(s)'s low bits.
      const T ls = log_(s);
      for (int64_t i = 0; i < valid; ++i) yr[i] = (scale * xr[i] - shift) - ls;
      for (int64_t i = valid; i < n; ++i) yr[i] = -std::numeric_limits<T>::infinity();
    }
  }
}

template <typename T>
KILN_INLINE void softmax_backward_impl(const T* y, const T* g, T* gx, int64_t rows, int64_t n, bool log,
                                       T scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* yr = y + r * n;
    const T* gr = g + r * n;
    T* o = gx + r * n;
    if (!log) {
      T d = row_dot(gr, yr, n);
      for (int64_t i = 0; i < n; ++i) o[i] = scale * (yr[i] * (gr[i] - d));
    } else {
      T s = row_sum(gr, n);
      for (int64_t i = 0; i < n; ++i) o[i] = scale * (gr[i] - exp_(yr[i]) * s);
    }
  }
}

template <typename T>
KILN_INLINE void layer_norm_impl(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows,
                                 int64_t n, T eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    T m = row_sum(xr, n) / static_cast<T>(n);
    T acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (int j = 0; j < kLanes; ++j) acc[j] += (xr[i + j] - m) * (xr[i + j] - m);
    for (int j = 0; i < n; ++i, ++j) acc[j] += (xr[i] - m) * (xr[i] - m);
    T rs = T(1) / std::sqrt(lanes_sum(acc) / static_cast<T>(n) + eps);
    mean[r] = m;
    rstd[r] = rs;
    if (w && b) {
      for (int64_t k = 0; k < n; ++k) yr[k] = (xr[k] - m) * rs * w[k] + b[k];
    } else if (w) {
      for (int64_t k = 0; k < n; ++k) yr[k] = (xr[k] - m) * rs * w[k];
    } else if (b) {
      for (int64_t k = 0; k < n; ++k) yr[k] = (xr[k] - m) * rs + b[k];
    } else {
      for (int64_t k = 0; k < n; ++k) yr[k] = (xr[k] - m) * rs;
    }
  }
}

template <typename T>
KILN_INLINE void layer_norm_backward_impl(const T* x, const T* g, const T* w, const T* mean, const T* rstd,
                                          T* gx, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    const T* gr = g + r * n;
    T* o = gx + r * n;
    const T m = mean[r], rs = rstd[r];
    // Two fused sums: a = sum(gw), c = sum(gw * xhat).
    T acc_a[kLanes] = {}, acc_c[kLanes] = {};
    int64_t i = 0;
    if (w) {
      for (; i + kLanes <= n; i += kLanes)
        for (int j = 0; j < kLanes; ++j) {
          acc_a[j] += gr[i + j] * w[i + j];
          acc_c[j] += gr[i + j] * w[i + j] * ((xr[i + j] - m) * rs);
        }
      for (int j = 0; i < n; ++i, ++j) {
        acc_a[j] += gr[i] * w[i];
        acc_c[j] += gr[i] * w[i] * ((xr[i] - m) * rs);
      }
    } else {
      for (; i + kLanes <= n; i += kLanes)
        for (int j = 0; j < kLanes; ++j) {
          acc_a[j] += gr[i + j];
          acc_c[j] += gr[i + j] * ((xr[i + j] - m) * rs);
        }
      for (int j = 0; i < n; ++i, ++j) {
        acc_a[j] += gr[i];
        acc_c[j] += gr[i] * ((xr[i] - m) * rs);
      }
    }
    const T a = lanes_sum(acc_a) / static_cast<T>(n), c = lanes_sum(acc_c) / static_cast<T>(n);
    if (w) {
      for (int64_t k = 0; k < n; ++k) o[k] = rs * (gr[k] * w[k] - a - (xr[k] - m) * rs * c);
    } else {
      for (int64_t k = 0; k < n; ++k) o[k] = rs * (gr[k] - a - (xr[k] - m) * rs * c);
    }
  }
}

template <typename T>
KILN_INLINE void layer_norm_param_grad_impl(const T* x, const T* g, const T* mean, const T* rstd, T* dw, T* db,
                                            int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    const T* gr = g + r * n;
    const T m = mean[r], rs = rstd[r];
    if (dw)
      for (int64_t k = 0; k < n; ++k) dw[k] += gr[k] * ((xr[k] - m) * rs);
    if (db)
      for (int64_t k = 0; k < n; ++k) db[k] += gr[k];
  }
}

template <typename T>
KILN_INLINE void cross_entropy_impl(const T* x, const int64_t* target, T* loss, T* lse, int64_t rows, int64_t n,
                                    T eps, int64_t ignore_index) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T m = row_max(xr, n);
    T acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (int j = 0; j < kLanes; ++j) acc[j] += exp_(xr[i + j] - m);
    for (int j = 0; i < n; ++i, ++j) acc[j] += exp_(xr[i] - m);
    // Written relative to the max so that large logits keep log(s)'s low bits:
    // lse - (1-eps) x_t - eps mean(x) = log(s) + (1-eps)(m - x_t) + eps (m - mean(x)).
    const T ls = log_(lanes_sum(acc));
    lse[r] = ls;
    int64_t t = target[r];
    if (t == ignore_index) {
      loss[r] = T(0);
      continue;
    }
    T v = ls + (T(1) - eps) * (m - xr[t]);
    if (eps != T(0)) v += eps * (m - row_sum(xr, n) / static_cast<T>(n));
    loss[r] = v;
  }
}

template <typename T>
KILN_INLINE void cross_entropy_backward_impl(const T* x, const int64_t* target, const T* lse, const T* scale,
                                             int64_t scale_stride, T* gx, int64_t rows, int64_t n, T eps,
                                             int64_t ignore_index) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* o = gx + r * n;
    int64_t t = target[r];
    if (t == ignore_index) {
      for (int64_t i = 0; i < n; ++i) o[i] = T(0);
      continue;
    }
    const T s = scale[r * scale_stride], m = row_max(xr, n), ls = lse[r], smooth = eps / static_cast<T>(n);
    for (int64_t i = 0; i < n; ++i) o[i] = s * (exp_((xr[i] - m) - ls) - smooth);
    o[t] -= s * (T(1) - eps);
  }
}

// ---- f32 entry points, built twice (AVX2 and baseline) ----

KILN_CLONES void softmax_f32(const float* x, float* y, int64_t rows, int64_t n, float scale, bool log,
                             int64_t period, int64_t row0) {
  softmax_impl<float>(x, y, rows, n, scale, log, period, row0);
}
KILN_CLONES void softmax_backward_f32(const float* y, const float* g, float* gx, int64_t rows, int64_t n, bool log,
                                      float scale) {
  softmax_backward_impl<float>(y, g, gx, rows, n, log, scale);
}
KILN_CLONES void layer_norm_f32(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd,
                                int64_t rows, int64_t n, float eps) {
  layer_norm_impl<float>(x, w, b, y, mean, rstd, rows, n, eps);
}
KILN_CLONES void layer_norm_backward_f32(const float* x, const float* g, const float* w, const float* mean,
                                         const float* rstd, float* gx, int64_t rows, int64_t n) {
  layer_norm_backward_impl<float>(x, g, w, mean, rstd, gx, rows, n);
}
KILN_CLONES void layer_norm_param_grad_f32(const float* x, const float* g, const float* mean, const float* rstd,
                                           float* dw, float* db, int64_t rows, int64_t n) {
  layer_norm_param_grad_impl<float>(x, g, mean, rstd, dw, db, rows, n);
}
KILN_CLONES void cross_entropy_f32(const float* x, const int64_t* target, float* loss, float* lse, int64_t rows,
                                   int64_t n, float eps, int64_t ignore_index) {
  cross_entropy_impl<float>(x, target, loss, lse, rows, n, eps, ignore_index);
}
KILN_CLONES void cross_entropy_backward_f32(const float* x, const int64_t* target, const float* lse,
                                            const float* scale, int64_t scale_stride, float* gx, int64_t rows,
                                            int64_t n, float eps, int64_t ignore_index) {
  cross_entropy_backward_impl<float>(x, target, lse, scale, scale_stride, gx, rows, n, eps, ignore_index);
}

}  // namespace

template <typename T>
void softmax_rows(const T* x, T* y, int64_t rows, int64_t n, T scale, bool log, int64_t causal_period,
                  int64_t row0) {
  if constexpr (std::is_same_v<T, float>)
    softmax_f32(x, y, rows, n, scale, log, causal_period, row0);
  else
    softmax_impl<T>(x, y, rows, n, scale, log, causal_period, row0);
}

template <typename T>
void softmax_backward_rows(const T* y, const T* g, T* gx, int64_t rows, int64_t n, bool log, T scale) {
  if constexpr (std::is_same_v<T, float>)
    softmax_backward_f32(y, g, gx, rows, n, log, scale);
  else
    softmax_backward_impl<T>(y, g, gx, rows, n, log, scale);
}

template <typename T>
void layer_norm_rows(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows, int64_t n,
                     T eps) {
  if constexpr (std::is_same_v<T, float>)
    layer_norm_f32(x, w, b, y, mean, rstd, rows, n, eps);
  else
    layer_norm_impl<T>(x, w, b, y, mean, rstd, rows, n, eps);
}

template <typename T>
void layer_norm_backward_rows(const T* x, const T* g, const T* w, const T* mean, const T* rstd, T* gx,
                              int64_t rows, int64_t n) {
  if constexpr (std::is_same_v<T, float>)
    layer_norm_backward_f32(x, g, w, mean, rstd, gx, rows, n);
  else
    layer_norm_backward_impl<T>(x, g, w, mean, rstd, gx, rows, n);
}

template <typename T>
void layer_norm_param_grad_rows(const T* x, const T* g, const T* mean, const T* rstd, T* dw, T* db, int64_t rows,
                                int64_t n) {
  if constexpr (std::is_same_v<T, float>)
    layer_norm_param_grad_f32(x, g, mean, rstd, dw, db, rows, n);
  else
    layer_norm_param_grad_impl<T>(x, g, mean, rstd, dw, db, rows, n);
}

template <typename T>
void cross_entropy_rows(const T* x, const int64_t* target, T* loss, T* lse, int64_t rows, int64_t n, T eps,
                        int64_t ignore_index) {
  if constexpr (std::is_same_v<T, float>)
    cross_entropy_f32(x, target, loss, lse, rows, n, eps, ignore_index);
  else
    cross_entropy_impl<T>(x, target, loss, lse, rows, n, eps, ignore_index);
}

template <typename T>
void cross_entropy_backward_rows(const T* x, const int64_t* target, const T* lse, const T* scale,
                                 int64_t scale_stride, T* gx, int64_t rows, int64_t n, T eps,
                                 int64_t ignore_index) {
  if constexpr (std::is_same_v<T, float>)
    cross_entropy_backward_f32(x, target, lse, scale, scale_stride, gx, rows, n, eps, ignore_index);
  else
    cross_entropy_backward_impl<T>(x, target, lse, scale, scale_stride, gx, rows, n, eps, ignore_index);
}

#define KILN_INSTANTIATE_ROW_KERNELS(T)                                                                        \
  template void softmax_rows<T>(const T*, T*, int64_t, int64_t, T, bool, int64_t, int64_t);                   \
  template void softmax_backward_rows<T>(const T*, const T*, T*, int64_t, int64_t, bool, T);                  \
  template void layer_norm_rows<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, T);            \
  template void layer_norm_backward_rows<T>(const T*, const T*, const T*, const T*, const T*, T*, int64_t,    \
                                            int64_t);                                                         \
  template void layer_norm_param_grad_rows<T>(const T*, const T*, const T*, const T*, T*, T*, int64_t,        \
                                              int64_t);                                                       \
  template void cross_entropy_rows<T>(const T*, const int64_t*, T*, T*, int64_t, int64_t, T, int64_t);        \
  template void cross_entropy_backward_rows<T>(const T*, const int64_t*, const T*, const T*, int64_t, T*,     \
                                               int64_t, int64_t, T, int64_t);

KILN_INSTANTIATE_ROW_KERNELS(float)
KILN_INSTANTIATE_ROW_KERNELS(double)

}  // namespace kiln::ops::cpu
