// The ONNX losses of inference_extra.h: NegativeLogLikelihoodLoss (onnx_loss::nll_loss) and
// SoftmaxCrossEntropyLoss (onnx_loss::cross_entropy). Forward only, with ONNX's rules: class
// dim 1, optional per-class weights, an ignore_index that may lie outside [0, C), and a mean
// weighted by the weights of the targets kept. Sums accumulate in double.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kiln/ops/inference_extra.h"

namespace kiln::ops::onnx_loss {

namespace {

// Checks (input (N, C, d...), target (N, d...), weight (C)) and returns the compute dtype.
DType check_loss_args(const char* name, const Tensor& input, const Tensor& target, const Tensor& weight) {
  KILN_CHECK(input.dim() >= 2, name, ": input must be (N, C) or (N, C, d1, ..., dk), got ", shape_str(input.shape()));
  KILN_CHECK_TYPE(is_floating(input.dtype()), name, ": input must be a float tensor, got ", dtype_name(input.dtype()));
  KILN_CHECK_TYPE(is_integral(target.dtype()), name, ": target must be an integer tensor, got ",
                  dtype_name(target.dtype()));
  Shape want = input.shape();
  want.erase(want.begin() + 1);
  KILN_CHECK(target.shape() == want, name, ": target ", shape_str(target.shape()), " does not match input ",
             shape_str(input.shape()), " (expected ", shape_str(want), ": the input's shape without the class dim 1)");
  if (weight.defined()) {
    KILN_CHECK(weight.dim() == 1 && weight.size(0) == input.size(1), name, ": weight must be (C) = (", input.size(1),
               "), got ", shape_str(weight.shape()));
    KILN_CHECK_TYPE(is_floating(weight.dtype()), name, ": weight must be a float tensor, got ",
                    dtype_name(weight.dtype()));
  }
  return input.dtype() == DType::f64 ? DType::f64 : DType::f32;
}

template <typename T>
Tensor nll_loop(const Tensor& input, const Tensor& target, const Tensor& weight, std::optional<int64_t> ignore_index,
                Reduction reduction, const char* name) {
  Tensor x = contiguous_raw(input);  // (N, C, D)
  const int64_t n_batch = x.size(0), classes = x.size(1);
  const int64_t spatial = n_batch * classes == 0 ? 0 : x.numel() / (n_batch * classes);
  const T* px = x.data<T>();
  std::vector<int64_t> t = target.to_vector<int64_t>();
  std::vector<double> w = weight.defined() ? weight.to_vector<double>() : std::vector<double>();
  Tensor per = Tensor::empty(target.shape(), x.dtype());  // (N, d...)
  T* pl = per.data<T>();
  double total = 0, total_weight = 0;
  for (int64_t n = 0; n < n_batch; ++n)
    for (int64_t d = 0; d < spatial; ++d) {
      const int64_t i = n * spatial + d;
      const int64_t c = t[static_cast<size_t>(i)];
      if (ignore_index && c == *ignore_index) {
        pl[i] = T(0);
        continue;
      }
      KILN_CHECK_INDEX(c >= 0 && c < classes, name, ": target ", c, " at flat index ", i, " is out of range for ",
                       classes, " classes", ignore_index ? "" : " (no ignore_index is set)");
      double wc = w.empty() ? 1.0 : w[static_cast<size_t>(c)];
      double l = -static_cast<double>(px[(n * classes + c) * spatial + d]) * wc;
      pl[i] = static_cast<T>(l);
      total += l;
      total_weight += wc;
    }
  if (reduction == Reduction::none) return per;
  // 0/0 (every target ignored) is NaN, as in ONNX's reference.
  double v = reduction == Reduction::sum ? total
             : total_weight == 0         ? std::numeric_limits<double>::quiet_NaN()
                                         : total / total_weight;
  return Tensor::scalar(v, x.dtype());
}

}  // namespace

Tensor nll_loss(const Tensor& input, const Tensor& target, const Tensor& weight, std::optional<int64_t> ignore_index,
                Reduction reduction) {
  DType dt = check_loss_args("nll_loss", input, target, weight);
  Tensor x = to_dtype_raw(input, dt);
  Tensor out = dispatch_float(dt, "nll_loss", [&]<typename T>() {
    return nll_loop<T>(x, target, weight, ignore_index, reduction, "nll_loss");
  });
  return to_dtype_raw(out, input.dtype());
}

std::pair<Tensor, Tensor> cross_entropy(const Tensor& scores, const Tensor& labels, const Tensor& weight,
                                        std::optional<int64_t> ignore_index, Reduction reduction) {
  DType dt = check_loss_args("cross_entropy", scores, labels, weight);
  Tensor x = contiguous_raw(to_dtype_raw(scores, dt));  // (N, C, D)
  Tensor log_prob = Tensor::empty(scores.shape(), dt);
  const int64_t n_batch = x.size(0), classes = x.size(1);
  const int64_t spatial = n_batch * classes == 0 ? 0 : x.numel() / (n_batch * classes);
  Tensor loss = dispatch_float(dt, "cross_entropy", [&]<typename T>() {
    const T* px = x.data<T>();
    T* pp = log_prob.data<T>();
    // log_softmax over the classes at each (n, d): x - (max + log sum e^(x - max)).
    for (int64_t n = 0; n < n_batch; ++n)
      for (int64_t d = 0; d < spatial; ++d) {
        const T* row = px + n * classes * spatial + d;
        T* out = pp + n * classes * spatial + d;
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t c = 0; c < classes; ++c) mx = std::max(mx, static_cast<double>(row[c * spatial]));
        double s = 0;
        for (int64_t c = 0; c < classes; ++c) s += std::exp(static_cast<double>(row[c * spatial]) - mx);
        const double lse = mx + std::log(s);
        for (int64_t c = 0; c < classes; ++c)
          out[c * spatial] = static_cast<T>(static_cast<double>(row[c * spatial]) - lse);
      }
    return nll_loop<T>(log_prob, labels, weight, ignore_index, reduction, "cross_entropy");
  });
  return {to_dtype_raw(loss, scores.dtype()), to_dtype_raw(log_prob, scores.dtype())};
}

}  // namespace kiln::ops::onnx_loss
