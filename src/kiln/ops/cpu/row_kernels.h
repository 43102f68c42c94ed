// Fused per-row kernels for the softmax / normalisation / loss family. A "row" is a contiguous run
// of n elements; callers split rows across threads. The f32 builds are compiled for AVX2 and for a
// portable baseline and chosen at load time (target_clones); f64 is the same code, used by
// gradient checks. Every sum runs in a fixed lane order, so results never depend on threading.
#pragma once

#include <cstdint>

namespace kiln::ops::cpu {

// y[r] = softmax(scale * x[r]) (log_softmax when `log`), scale > 0. With causal_period L > 0 the
// row with absolute index row0 + r keeps columns c <= (row0 + r) % L (the top-left aligned causal
// mask); masked entries of y are 0 (-inf for log). x and y may alias.
template <typename T>
void softmax_rows(const T* x, T* y, int64_t rows, int64_t n, T scale, bool log, int64_t causal_period = 0,
                  int64_t row0 = 0);

// Backward of softmax_rows from its output y: gx = scale * y * (g - <g, y>) for softmax,
// gx = scale * (g - exp(y) * sum(g)) for log_softmax. gx may alias g.
template <typename T>
void softmax_backward_rows(const T* y, const T* g, T* gx, int64_t rows, int64_t n, bool log, T scale);

// y = (x - mean) * rstd * w + b per row (w, b may be null); writes mean and rstd (one per row).
template <typename T>
void layer_norm_rows(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows, int64_t n,
                     T eps);

// gx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)) with gw = g * w (w may be null).
template <typename T>
void layer_norm_backward_rows(const T* x, const T* g, const T* w, const T* mean, const T* rstd, T* gx,
                              int64_t rows, int64_t n);

// Accumulates dw[i] += sum_r g * xhat and db[i] += sum_r g, rows in order (dw or db may be null).
template <typename T>
void layer_norm_param_grad_rows(const T* x, const T* g, const T* mean, const T* rstd, T* dw, T* db, int64_t rows,
                                int64_t n);

// Cross entropy with label smoothing eps over rows of n logits: loss[r] = logsumexp(x[r]) -
// (1 - eps) x[t] - eps * mean(x[r]), and lse[r] = logsumexp(x[r] - max(x[r])) (the shifted form
// keeps full precision for large logits). Rows whose target is ignore_index get loss 0.
// Targets must already be validated (in [0, n) or ignore_index).
template <typename T>
void cross_entropy_rows(const T* x, const int64_t* target, T* loss, T* lse, int64_t rows, int64_t n, T eps,
                        int64_t ignore_index);

// gx[r] = s_r * (softmax(x[r]) - (1 - eps) onehot(t) - eps / n), s_r = scale[r * scale_stride],
// and 0 for ignored rows; lse is cross_entropy_rows' shifted logsumexp.
template <typename T>
void cross_entropy_backward_rows(const T* x, const int64_t* target, const T* lse, const T* scale,
                                 int64_t scale_stride, T* gx, int64_t rows, int64_t n, T eps,
                                 int64_t ignore_index);

}  // namespace kiln::ops::cpu
