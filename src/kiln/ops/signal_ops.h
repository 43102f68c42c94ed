// Forward-only signal-processing ops with ONNX semantics (opset 17): the window functions, the
// mel filter bank matrix, DFT and STFT. Everything is computed in f64 and returned in the
// requested (windows, mel) or the input's (DFT, STFT) float dtype. Complex values are a trailing
// dim of 2 (real, imaginary), as ONNX writes them. Nothing here records autograd history.
#pragma once

#include <cstdint>
#include <optional>

#include "kiln/core/tensor.h"

namespace kiln::ops {

// (size,) windows; periodic: the first `size` points of a window of size + 1 (spectral analysis),
// else symmetric (N = size - 1 in the formulas, y[0] == y[size - 1]).
//   hann      0.5 - 0.5 cos(2πn/N)
//   hamming   25/46 - 21/46 cos(2πn/N)
//   blackman  0.42 - 0.5 cos(2πn/N) + 0.08 cos(4πn/N)
Tensor hann_window(int64_t size, bool periodic = true, DType dtype = DType::f32);
Tensor hamming_window(int64_t size, bool periodic = true, DType dtype = DType::f32);
Tensor blackman_window(int64_t size, bool periodic = true, DType dtype = DType::f32);

// (dft_length / 2 + 1, num_mel_bins): triangular filters with peak 1, evenly spaced on the mel
// scale mel(f) = 2595 log10(1 + f / 700) between the edges; bin edges as ONNX's reference computes
// them (num_mel_bins + 2 points, the mel step dividing by that count).
Tensor mel_weight_matrix(int64_t num_mel_bins, int64_t dft_length, int64_t sample_rate, double lower_edge_hertz,
                         double upper_edge_hertz, DType dtype = DType::f32);

// x (b, ..., n, ..., c) with c = 1 (real) or 2 (complex) -> (b, ..., m, ..., 2): the DFT along
// `axis` (a dim other than the last; negative counts from the end of the signal dims), of length
// dft_length (the signal is zero-padded or truncated; default n). inverse: the inverse DFT (sign
// +, scaled by 1 / length). onesided (real input only): m = length / 2 + 1 bins, else m = length.
Tensor dft(const Tensor& x, int64_t axis = 1, std::optional<int64_t> dft_length = std::nullopt, bool inverse = false,
           bool onesided = false);

// signal (B, L, c), c = 1 or 2 -> (B, frames, bins, 2): DFTs of frames of frame_length samples
// every frame_step samples (frames = (L - frame_length) / frame_step + 1), each multiplied by
// `window` (frame_length,) when it is defined. frame_length defaults to the window's length.
// onesided (real signal only): bins = frame_length / 2 + 1, else frame_length.
Tensor stft(const Tensor& signal, int64_t frame_step, const Tensor& window = Tensor(),
            std::optional<int64_t> frame_length = std::nullopt, bool onesided = true);

}  // namespace kiln::ops
