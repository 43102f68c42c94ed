// Forward-only recurrent layers with ONNX semantics (RNN, GRU, LSTM; opsets 7-14, inference):
// the input projection of every time step is one GEMM, then each step multiplies the hidden state
// by R. f32 only. Nothing here records autograd history.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::ops {

enum class RnnKind { rnn, gru, lstm };
enum class RnnDirection { forward, reverse, bidirectional };

// The activation functions ONNX's recurrent ops accept, by ONNX name (case-insensitive).
enum class RnnActivationKind {
  sigmoid, tanh, relu, affine, leaky_relu, thresholded_relu, scaled_tanh, hard_sigmoid, elu, softsign, softplus
};
struct RnnActivation {
  RnnActivationKind kind = RnnActivationKind::tanh;
  float alpha = 0.0f, beta = 0.0f;
};

// Number of activation functions per direction: RNN 1 (f), GRU 2 (f, g), LSTM 3 (f, g, h).
int64_t rnn_activations_per_direction(RnnKind kind);
// Number of gates (row blocks of W and R): RNN 1, GRU 3 (z, r, h), LSTM 4 (i, o, f, c).
int64_t rnn_gates(RnnKind kind);

// ONNX's activations / activation_alpha / activation_beta attributes -> one RnnActivation per
// (direction, function). Empty names: the defaults (RNN Tanh; GRU Sigmoid, Tanh; LSTM Sigmoid,
// Tanh, Tanh). One direction's worth of names for a bidirectional layer serves both directions.
// alpha and beta values are consumed in order by the functions that take them (as onnxruntime
// does); a function left without one uses its ONNX default (LeakyRelu 0.01, ThresholdedRelu 1,
// HardSigmoid 0.2/0.5, Elu 1, Affine 1/0, ScaledTanh 1/1). Unknown names throw naming the name.
std::vector<RnnActivation> rnn_activations(RnnKind kind, int64_t num_directions, const std::vector<std::string>& names,
                                           const std::vector<double>& alphas = {},
                                           const std::vector<double>& betas = {});
RnnDirection rnn_direction_from_name(std::string_view name);  // "forward", "reverse", "bidirectional"

struct RnnOptions {
  RnnKind kind = RnnKind::rnn;
  int64_t hidden_size = 0;                  // H; 0: taken from R's last dim
  RnnDirection direction = RnnDirection::forward;
  std::vector<RnnActivation> activations;   // empty: defaults; else per direction, see rnn_activations
  std::optional<float> clip;                // gate pre-activations clamped to [-clip, clip]
  bool input_forget = false;                // LSTM: forget gate = 1 - input gate
  bool linear_before_reset = false;         // GRU: r * (H @ Rh^T + Rbh) instead of (r * H) @ Rh^T + Rbh
  bool batch_first = false;                 // ONNX layout=1: X (B, T, I), Y (B, T, D, H), states (B, D, H)
};

// The ONNX inputs, with D directions and G gates; optional ones may be undefined.
struct RnnInputs {
  Tensor x;              // (T, B, I), or (B, T, I) when batch_first
  Tensor w;              // (D, G*H, I)
  Tensor r;              // (D, G*H, H)
  Tensor b;              // (D, 2*G*H): [Wb, Rb]; absent: zeros
  Tensor sequence_lens;  // (B) i32 or i64; absent: every sequence has length T
  Tensor initial_h;      // (D, B, H), or (B, D, H) when batch_first; absent: zeros
  Tensor initial_c;      // LSTM only, like initial_h
  Tensor p;              // LSTM only: (D, 3*H) peepholes [Pi, Po, Pf]; absent: zeros
};

struct RnnResult {
  Tensor y;    // (T, D, B, H), or (B, T, D, H) when batch_first; zeros past each sequence's length
  Tensor y_h;  // (D, B, H), or (B, D, H): the last hidden state of each sequence and direction
  Tensor y_c;  // LSTM only, like y_h: the last cell state
};

// Runs the layer. A step past a sequence's length writes zeros to Y and leaves the state as it
// was; the reverse direction starts each sequence at its own last valid step.
// The double-precision oracle is a step-by-step loop in tests/graph/rnn_kernels_test.cpp.
RnnResult rnn_forward(const RnnInputs& in, const RnnOptions& opt);

// The entry points named by the ops.def rows (graph ops rnn, gru, lstm): rnn_forward of that kind.
inline RnnResult rnn(const RnnInputs& in, RnnOptions opt) {
  opt.kind = RnnKind::rnn;
  return rnn_forward(in, opt);
}
inline RnnResult gru(const RnnInputs& in, RnnOptions opt) {
  opt.kind = RnnKind::gru;
  return rnn_forward(in, opt);
}
inline RnnResult lstm(const RnnInputs& in, RnnOptions opt) {
  opt.kind = RnnKind::lstm;
  return rnn_forward(in, opt);
}

// The activation applied to one value (exposed for tests).
float rnn_activate(const RnnActivation& a, float x);

}  // namespace kiln::ops
