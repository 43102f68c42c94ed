// Window functions, mel weight matrix, DFT and STFT (signal_ops.h). The transforms are the plain
// O(n^2) sum with a table of n twiddle factors (index j*k mod n), in f64: the signals ONNX graphs
// carry here are short frames, and f64 keeps the sum within f32 rounding of an FFT.
#include "kiln/ops/signal_ops.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "kiln/core/thread_pool.h"

namespace kiln::ops {

namespace {

constexpr double kTwoPi = 2.0 * std::numbers::pi;

// a0 - a1 cos(2πn/N) + a2 cos(4πn/N), N = size (periodic) or size - 1 (symmetric).
Tensor cosine_window(const char* op, int64_t size, bool periodic, DType dtype, double a0, double a1, double a2) {
  KILN_CHECK(size >= 0, op, ": size must be >= 0, got ", size);
  KILN_CHECK_TYPE(dtype != DType::b8, op, ": output dtype must be numeric, got bool");
  std::vector<double> y(static_cast<size_t>(size));
  const double N = static_cast<double>(periodic ? size : size - 1);
  for (int64_t n = 0; n < size; ++n) {
    const double t = N > 0 ? kTwoPi * static_cast<double>(n) / N : 0.0;
    y[static_cast<size_t>(n)] = a0 - a1 * std::cos(t) + a2 * std::cos(2.0 * t);
  }
  return to_dtype_raw(Tensor::from_vector(y, {size}), dtype);
}

void check_float(const Tensor& x, const char* op, const char* what) {
  KILN_CHECK(x.defined(), op, ": ", what, " is undefined");
  KILN_CHECK_TYPE(is_floating(x.dtype()), op, ": ", what, " must be a float tensor (f32, f64, f16, bf16), got ",
                  dtype_name(x.dtype()));
}

// exp(sign * 2πi k / n) for k in [0, n): (cos, sin) pairs.
std::vector<double> twiddles(int64_t n, double sign) {
  std::vector<double> w(static_cast<size_t>(2 * n));
  for (int64_t k = 0; k < n; ++k) {
    const double a = sign * kTwoPi * static_cast<double>(k) / static_cast<double>(n);
    w[2 * k] = std::cos(a);
    w[2 * k + 1] = std::sin(a);
  }
  return w;
}

// One transform line: in[j * in_stride] (j < count, complex when `complex`, else real), zero past
// count, length n; out[k * out_stride] for k < bins as (re, im), scaled by `scale`.
void dft_line(const double* in, int64_t in_stride, int64_t count, bool complex, int64_t n, int64_t bins,
              const std::vector<double>& w, double scale, double* out, int64_t out_stride) {
  for (int64_t k = 0; k < bins; ++k) {
    double re = 0.0, im = 0.0;
    int64_t idx = 0;  // j * k mod n, advanced by k each step (no overflow for long signals)
    for (int64_t j = 0; j < count; ++j) {
      const double xr = in[j * in_stride], xi = complex ? in[j * in_stride + 1] : 0.0;
      const double c = w[2 * idx], s = w[2 * idx + 1];
      re += xr * c - xi * s;
      im += xr * s + xi * c;
      idx += k;
      if (idx >= n) idx %= n;
    }
    out[k * out_stride] = re * scale;
    out[k * out_stride + 1] = im * scale;
  }
}

}  // namespace

Tensor hann_window(int64_t size, bool periodic, DType dtype) {
  return cosine_window("hann_window", size, periodic, dtype, 0.5, 0.5, 0.0);
}
Tensor hamming_window(int64_t size, bool periodic, DType dtype) {
  return cosine_window("hamming_window", size, periodic, dtype, 25.0 / 46.0, 21.0 / 46.0, 0.0);
}
Tensor blackman_window(int64_t size, bool periodic, DType dtype) {
  return cosine_window("blackman_window", size, periodic, dtype, 0.42, 0.5, 0.08);
}

Tensor mel_weight_matrix(int64_t num_mel_bins, int64_t dft_length, int64_t sample_rate, double lower_edge_hertz,
                         double upper_edge_hertz, DType dtype) {
  const char* op = "mel_weight_matrix";
  KILN_CHECK(num_mel_bins >= 1 && dft_length >= 1 && sample_rate >= 1, op,
             ": num_mel_bins, dft_length and sample_rate must be >= 1, got ", num_mel_bins, ", ", dft_length, ", ",
             sample_rate);
  KILN_CHECK(lower_edge_hertz >= 0.0 && lower_edge_hertz < upper_edge_hertz, op,
             ": need 0 <= lower_edge_hertz < upper_edge_hertz, got ", lower_edge_hertz, " and ", upper_edge_hertz);
  KILN_CHECK_TYPE(dtype != DType::b8, op, ": output dtype must be numeric, got bool");
  const int64_t bins = dft_length / 2 + 1, points = num_mel_bins + 2;
  auto mel = [](double hz) { return 2595.0 * std::log10(1.0 + hz / 700.0); };
  const double lo = mel(lower_edge_hertz), step = (mel(upper_edge_hertz) - lo) / static_cast<double>(points);
  std::vector<int64_t> edge(static_cast<size_t>(points));  // spectrogram bin of each mel point
  for (int64_t i = 0; i < points; ++i) {
    const double hz = 700.0 * (std::pow(10.0, (static_cast<double>(i) * step + lo) / 2595.0) - 1.0);
    edge[i] = static_cast<int64_t>(std::floor(static_cast<double>(dft_length + 1) * hz / static_cast<double>(sample_rate)));
    KILN_CHECK(edge[i] >= 0 && edge[i] < bins, op, ": upper_edge_hertz ", upper_edge_hertz,
               " lies past the last bin of a ", dft_length, "-point DFT at sample rate ", sample_rate);
  }
  std::vector<double> w(static_cast<size_t>(bins * num_mel_bins), 0.0);  // (bins, num_mel_bins)
  for (int64_t i = 0; i < num_mel_bins; ++i) {
    const int64_t left = edge[i], center = edge[i + 1], right = edge[i + 2];
    if (center == left) {
      w[center * num_mel_bins + i] = 1.0;
    } else {
      for (int64_t j = left; j <= center; ++j)
        w[j * num_mel_bins + i] = static_cast<double>(j - left) / static_cast<double>(center - left);
    }
    for (int64_t j = center; j < right; ++j)
      w[j * num_mel_bins + i] = static_cast<double>(right - j) / static_cast<double>(right - center);
  }
  return to_dtype_raw(Tensor::from_vector(w, {bins, num_mel_bins}), dtype);
}

Tensor dft(const Tensor& x, int64_t axis, std::optional<int64_t> dft_length, bool inverse, bool onesided) {
  const char* op = "dft";
  check_float(x, op, "input");
  KILN_CHECK(x.dim() >= 2 && (x.shape().back() == 1 || x.shape().back() == 2), op,
             ": input must be (batch, signal dims..., 1 or 2), got ", shape_str(x.shape()));
  const int64_t sig_rank = x.dim() - 1;
  const int64_t a = axis < 0 ? axis + sig_rank : axis;
  KILN_CHECK_INDEX(a >= 0 && a < sig_rank, op, ": axis ", axis, " is out of range for input ", shape_str(x.shape()),
                   " (the last dim holds the real and imaginary parts)");
  const bool complex = x.shape().back() == 2;
  KILN_CHECK(!(onesided && complex), op, ": a onesided DFT needs a real input, got ", shape_str(x.shape()));
  const int64_t count_in = x.shape()[a];
  const int64_t n = dft_length.value_or(count_in);
  KILN_CHECK(n >= 1, op, ": dft_length must be >= 1, got ", n);
  const int64_t bins = onesided ? n / 2 + 1 : n;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < a; ++d) outer *= x.shape()[d];
  for (int64_t d = a + 1; d < sig_rank; ++d) inner *= x.shape()[d];
  Shape out_shape = x.shape();
  out_shape[a] = bins;
  out_shape.back() = 2;
  Tensor xd = contiguous_raw(to_dtype_raw(x, DType::f64));
  Tensor out = Tensor::empty(out_shape, DType::f64);
  const std::vector<double> w = twiddles(n, inverse ? 1.0 : -1.0);
  const double scale = inverse ? 1.0 / static_cast<double>(n) : 1.0;
  const int64_t c = x.shape().back(), count = std::min(count_in, n);
  const double* px = xd.data<double>();
  double* po = out.data<double>();
  parallel_for(0, outer * inner, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, n * bins)), [&](int64_t lo, int64_t hi) {
    for (int64_t line = lo; line < hi; ++line) {
      const int64_t o = line / inner, i = line % inner;
      dft_line(px + (o * count_in * inner + i) * c, inner * c, count, complex, n, bins, w, scale,
               po + (o * bins * inner + i) * 2, inner * 2);
    }
  });
  return to_dtype_raw(out, x.dtype());
}

Tensor stft(const Tensor& signal, int64_t frame_step, const Tensor& window, std::optional<int64_t> frame_length,
            bool onesided) {
  const char* op = "stft";
  check_float(signal, op, "signal");
  KILN_CHECK(signal.dim() == 3 && (signal.shape()[2] == 1 || signal.shape()[2] == 2), op,
             ": signal must be (batch, length, 1 or 2), got ", shape_str(signal.shape()));
  KILN_CHECK(frame_step >= 1, op, ": frame_step must be >= 1, got ", frame_step);
  if (window.defined()) {
    check_float(window, op, "window");
    KILN_CHECK(window.dim() == 1, op, ": window must be 1-d, got ", shape_str(window.shape()));
    KILN_CHECK(!frame_length || *frame_length == window.numel(), op, ": frame_length ", frame_length.value_or(0),
               " differs from the window's length ", window.numel());
  }
  KILN_CHECK(window.defined() || frame_length, op, ": needs a window or a frame_length");
  const int64_t n = window.defined() ? window.numel() : *frame_length;
  const int64_t B = signal.shape()[0], L = signal.shape()[1], c = signal.shape()[2];
  KILN_CHECK(n >= 1 && n <= L, op, ": frame_length ", n, " must be in [1, signal length ", L, "]");
  const bool complex = c == 2;
  KILN_CHECK(!(onesided && complex), op, ": a onesided STFT needs a real signal, got ", shape_str(signal.shape()));
  const int64_t frames = (L - n) / frame_step + 1, bins = onesided ? n / 2 + 1 : n;
  Tensor sd = contiguous_raw(to_dtype_raw(signal, DType::f64));
  std::vector<double> win = window.defined() ? window.to_vector<double>() : std::vector<double>(n, 1.0);
  Tensor out = Tensor::empty({B, frames, bins, 2}, DType::f64);
  const std::vector<double> w = twiddles(n, -1.0);
  const double* ps = sd.data<double>();
  double* po = out.data<double>();
  parallel_for(0, B * frames, std::max<int64_t>(1, 4096 / (n * bins)), [&](int64_t lo, int64_t hi) {
    std::vector<double> frame(static_cast<size_t>(n * c));
    for (int64_t bf = lo; bf < hi; ++bf) {
      const int64_t b = bf / frames, f = bf % frames;
      const double* src = ps + (b * L + f * frame_step) * c;
      for (int64_t j = 0; j < n * c; ++j) frame[j] = src[j] * win[j / c];
      dft_line(frame.data(), c, n, complex, n, bins, w, 1.0, po + bf * bins * 2, 2);
    }
  });
  return to_dtype_raw(out, signal.dtype());
}

}  // namespace kiln::ops
