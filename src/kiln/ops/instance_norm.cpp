// instance_norm (ONNX InstanceNormalization), forward only: each (n, c) slice of x (N, C, d...) is
// normalised by its own mean and biased variance. Statistics are two-pass in f64 (a plane of a
// style-transfer net holds ~10^5 values, where one-pass f32 sums lose digits).
#include <algorithm>
#include <cmath>

#include "kiln/core/error.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/inference_nn.h"

namespace kiln::ops {

namespace {

template <typename T>
void instance_norm_planes(const T* x, const T* scale, const T* bias, T* y, int64_t planes, int64_t C, int64_t S,
                          double eps) {
  parallel_for(0, planes, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, S)), [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) {
      const T* xp = x + p * S;
      T* yp = y + p * S;
      double mean = 0.0;
      for (int64_t i = 0; i < S; ++i) mean += static_cast<double>(xp[i]);
      mean /= static_cast<double>(S);
      double var = 0.0;
      for (int64_t i = 0; i < S; ++i) {
        const double d = static_cast<double>(xp[i]) - mean;
        var += d * d;
      }
      var /= static_cast<double>(S);
      const int64_t c = p % C;
      // y = x * a + shift, with a = scale / sqrt(var + eps), shift = bias - mean * a.
      const double a = static_cast<double>(scale[c]) / std::sqrt(var + eps);
      const double shift = static_cast<double>(bias[c]) - mean * a;
      for (int64_t i = 0; i < S; ++i) yp[i] = static_cast<T>(static_cast<double>(xp[i]) * a + shift);
    }
  });
}

}  // namespace

Tensor instance_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, double eps) {
  KILN_CHECK(x.dim() >= 3, "instance_norm: input must be (N, C, d...) with at least one spatial dim, got ",
             shape_str(x.shape()));
  const int64_t N = x.shape()[0], C = x.shape()[1];
  KILN_CHECK(scale.defined() && bias.defined() && scale.dim() == 1 && bias.dim() == 1 && scale.shape()[0] == C &&
                 bias.shape()[0] == C,
             "instance_norm: scale and bias must both be (", C, ") for input ", shape_str(x.shape()), ", got ",
             scale.defined() ? shape_str(scale.shape()) : "none", " and ",
             bias.defined() ? shape_str(bias.shape()) : "none");
  KILN_CHECK_TYPE((x.dtype() == DType::f32 || x.dtype() == DType::f64) && scale.dtype() == x.dtype() &&
                      bias.dtype() == x.dtype(),
                  "instance_norm: expected f32 or f64 input, scale and bias of one dtype, got ", dtype_name(x.dtype()),
                  ", ", dtype_name(scale.dtype()), " and ", dtype_name(bias.dtype()));
  KILN_CHECK(eps >= 0.0, "instance_norm: epsilon must be >= 0, got ", eps);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const int64_t S = N * C == 0 ? 0 : x.numel() / (N * C);
  if (out.numel() == 0) return out;
  Tensor xc = contiguous_raw(x), sc = contiguous_raw(scale), bc = contiguous_raw(bias);
  dispatch_float(x.dtype(), "instance_norm", [&]<typename T>() {
    instance_norm_planes<T>(xc.data<T>(), sc.data<T>(), bc.data<T>(), out.data<T>(), N * C, C, S, eps);
  });
  return out;
}

}  // namespace kiln::ops
