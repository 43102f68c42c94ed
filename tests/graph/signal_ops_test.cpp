// Tests for ops/signal_ops.h and its graph kernels (graph/kernels_signal.cpp): windows against
// their closed forms, a mel matrix worked by hand, DFT and STFT against a naive std::complex DFT.
#include <complex>
#include <numbers>

#include "graph/node_kernel_util.h"
#include "kiln/ops/signal_ops.h"

namespace kiln::graph {
namespace {

using namespace testing;
using cd = std::complex<double>;

constexpr double kPi = std::numbers::pi;

std::vector<double> closed_form_window(const char* kind, int64_t size, bool periodic) {
  std::vector<double> w;
  const double N = static_cast<double>(periodic ? size : size - 1);
  for (int64_t n = 0; n < size; ++n) {
    const double a = 2 * kPi * static_cast<double>(n) / N;
    if (std::string(kind) == "hann") w.push_back(std::pow(std::sin(a / 2), 2));  // 0.5 - 0.5 cos a
    if (std::string(kind) == "hamming") w.push_back(0.54347826086956519 - 0.45652173913043476 * std::cos(a));
    if (std::string(kind) == "blackman") w.push_back(0.42 - 0.5 * std::cos(a) + 0.08 * std::cos(2 * a));
  }
  return w;
}

TEST(SignalOps, WindowsMatchTheirClosedForms) {
  for (const char* kind : {"hann", "hamming", "blackman"})
    for (int64_t periodic : {0, 1})
      for (int64_t size : {1, 2, 10, 33}) {
        Node n = make_node(std::string(kind) + "_window", {{"periodic", periodic}, {"dtype", std::string("f64")}});
        Tensor y = run1(n, {i64_scalar(size)});
        EXPECT_EQ(y.dtype(), DType::f64);
        if (size == 1) continue;  // N = 0 for a symmetric window of 1: the value at n = 0
        expect_near(y, {size}, closed_form_window(kind, size, periodic == 1), 1e-12);
      }
  // f32 by default; a symmetric window ends where it starts, a periodic one peaks at size / 2.
  Tensor sym = ops::hann_window(9, /*periodic=*/false);
  EXPECT_EQ(sym.dtype(), DType::f32);
  EXPECT_NEAR(sym.to_vector<double>()[0], 0.0, 1e-7);
  EXPECT_NEAR(sym.to_vector<double>()[8], 0.0, 1e-7);
  EXPECT_NEAR(sym.to_vector<double>()[4], 1.0, 1e-7);
  EXPECT_NEAR(ops::hann_window(10).to_vector<double>()[5], 1.0, 1e-7);
}

TEST(SignalOps, WindowErrorsNameTheNode) {
  expect_error([] { run1(make_node("hann_window"), {Tensor::scalar(4.0)}); }, {"hann_window_node", "size"});
  expect_error([] { ops::blackman_window(-1); }, {"blackman_window", "size"});
}

TEST(SignalOps, MelWeightMatrixWorkedByHand) {
  // 2 mel bins over 0..8 Hz of a 16-point DFT at 16 Hz: 4 mel points at about 0, 2, 4, 6 Hz fall
  // in spectrogram bins floor(17 * hz / 16) = 0, 2, 4, 6 (hz slightly under 2i: mel is concave),
  // so the triangles rise over 2 bins and fall over 2.
  Node n = make_node("mel_weight_matrix", {{"dtype", std::string("f64")}});
  Tensor m = run1(n, {i64_scalar(2), i64_scalar(16), i64_scalar(16), Tensor::scalar(0.0), Tensor::scalar(8.0)});
  expect_near(m, {9, 2}, {0, 0, 0.5, 0, 1, 0, 0.5, 0.5, 0, 1, 0, 0.5, 0, 0, 0, 0, 0, 0}, 1e-12);
  expect_error([] { ops::mel_weight_matrix(2, 16, 16, 0.0, 100.0); }, {"mel_weight_matrix", "upper_edge_hertz"});
}

// Naive DFT of one complex sequence zero-padded/truncated to n, by std::polar.
std::vector<cd> naive_dft(const std::vector<cd>& x, int64_t n, bool inverse) {
  std::vector<cd> y(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    for (int64_t j = 0; j < std::min<int64_t>(n, static_cast<int64_t>(x.size())); ++j)
      y[k] += x[j] * std::polar(1.0, (inverse ? 2 : -2) * kPi * static_cast<double>(j * k) / static_cast<double>(n));
    if (inverse) y[k] /= static_cast<double>(n);
  }
  return y;
}

Tensor ramp(const Shape& s, DType dt) {
  Tensor t = Tensor::empty(s, DType::f64);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = std::sin(0.37 * static_cast<double>(i * i % 23)) + 0.1 * i;
  return to_dtype_raw(t, dt);
}

// x (B, L0, L1, c): the reference DFT along axis 1 or 2 as a flat (.., 2) vector.
std::vector<double> reference_dft(const Tensor& x, int64_t axis, int64_t n, bool inverse, bool onesided) {
  const Shape& s = x.shape();
  const int64_t c = s[3], bins = onesided ? n / 2 + 1 : n;
  std::vector<double> v = x.to_vector<double>();
  Shape os = s;
  os[axis] = bins;
  std::vector<double> out(static_cast<size_t>(os[0] * os[1] * os[2] * 2));
  for (int64_t b = 0; b < s[0]; ++b)
    for (int64_t other = 0; other < s[3 - axis]; ++other) {
      std::vector<cd> line;
      for (int64_t j = 0; j < s[axis]; ++j) {
        const int64_t i1 = axis == 1 ? j : other, i2 = axis == 1 ? other : j;
        const double* p = &v[((b * s[1] + i1) * s[2] + i2) * c];
        line.emplace_back(p[0], c == 2 ? p[1] : 0.0);
      }
      std::vector<cd> y = naive_dft(line, n, inverse);
      for (int64_t k = 0; k < bins; ++k) {
        const int64_t o1 = axis == 1 ? k : other, o2 = axis == 1 ? other : k;
        double* q = &out[((b * os[1] + o1) * os[2] + o2) * 2];
        q[0] = y[k].real(), q[1] = y[k].imag();
      }
    }
  return out;
}

TEST(SignalOps, DftMatchesANaiveDft) {
  struct Case {
    Shape shape;
    int64_t axis;
    std::optional<int64_t> length;
    bool inverse, onesided;
  };
  for (DType dt : {DType::f64, DType::f32})
    for (const Case& c : {Case{{2, 6, 3, 1}, 1, std::nullopt, false, false}, Case{{2, 6, 3, 2}, 1, std::nullopt, false, false},
                          Case{{1, 4, 5, 1}, 2, std::nullopt, false, true}, Case{{1, 4, 7, 2}, -1, std::nullopt, true, false},
                          Case{{2, 5, 3, 1}, 1, 8, false, true}, Case{{2, 5, 3, 2}, 1, 3, true, false}}) {
      Tensor x = ramp(c.shape, dt);
      Attrs a = {{"axis", c.axis}, {"inverse", int64_t{c.inverse}}, {"onesided", int64_t{c.onesided}}};
      std::vector<Tensor> in = {x};
      if (c.length) in.push_back(i64_scalar(*c.length));
      Tensor y = run1(make_node("dft", a), in);
      EXPECT_EQ(y.dtype(), dt);
      const int64_t axis = c.axis < 0 ? c.axis + 3 : c.axis, n = c.length.value_or(c.shape[axis]);
      Shape os = c.shape;
      os[axis] = c.onesided ? n / 2 + 1 : n;
      os[3] = 2;
      expect_near(y, os, reference_dft(x, axis, n, c.inverse, c.onesided), dt == DType::f64 ? 1e-10 : 1e-4);
    }
}

TEST(SignalOps, InverseDftUndoesTheDft) {
  Tensor x = ramp({3, 8, 2}, DType::f64);
  Tensor back = ops::dft(ops::dft(x, 1), 1, std::nullopt, /*inverse=*/true);
  expect_near(back, {3, 8, 2}, x.to_vector<double>(), 1e-12);
}

TEST(SignalOps, DftErrors) {
  expect_error([] { ops::dft(ramp({1, 4, 2}, DType::f32), 2); }, {"dft", "axis 2"});
  expect_error([] { ops::dft(ramp({1, 4, 3}, DType::f32), 1); }, {"dft", "1 or 2"});
  expect_error([] { ops::dft(ramp({1, 4, 2}, DType::f32), 1, std::nullopt, false, true); }, {"dft", "onesided"});
  expect_error([] { run1(make_node("dft", {{"inverse", int64_t{2}}}), {ramp({1, 4, 1}, DType::f32)}); },
               {"dft_node", "inverse"});
}

TEST(SignalOps, StftMatchesFramedNaiveDfts) {
  for (bool with_window : {false, true}) {
    Tensor signal = ramp({2, 20, 1}, DType::f32);
    const int64_t step = 3, length = 6, frames = (20 - length) / step + 1, bins = length / 2 + 1;
    Tensor window = ops::hann_window(length);
    std::vector<Tensor> in = {signal, i64_scalar(step)};
    if (with_window) in.push_back(window);
    else in.insert(in.end(), {Tensor(), i64_scalar(length)});
    Tensor y = run1(make_node("stft"), in);
    std::vector<double> s = signal.to_vector<double>(), w = window.to_vector<double>(), want;
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t f = 0; f < frames; ++f) {
        std::vector<cd> frame;
        for (int64_t j = 0; j < length; ++j) frame.emplace_back(s[b * 20 + f * step + j] * (with_window ? w[j] : 1.0), 0.0);
        std::vector<cd> d = naive_dft(frame, length, false);
        for (int64_t k = 0; k < bins; ++k) want.insert(want.end(), {d[k].real(), d[k].imag()});
      }
    expect_near(y, {2, frames, bins, 2}, want, 1e-4);
  }
  // A complex signal keeps every bin (onesided must be off).
  Tensor y = ops::stft(ramp({1, 8, 2}, DType::f64), 4, Tensor(), 4, /*onesided=*/false);
  EXPECT_EQ(y.shape(), (Shape{1, 2, 4, 2}));
  expect_error([] { ops::stft(ramp({1, 8, 1}, DType::f32), 2, Tensor(), 9); }, {"stft", "frame_length 9"});
  expect_error([] { ops::stft(ramp({1, 8, 1}, DType::f32), 2, ops::hann_window(4), 5); }, {"stft", "window"});
}

}  // namespace
}  // namespace kiln::graph
