// Graph kernels for the ops of ops/signal_ops.h (ONNX opset 17 signal operators), forward only.
// Graph form (inputs in ONNX order; scalar parameters are tensor inputs read when the node runs):
//   hann_window, hamming_window, blackman_window (size) periodic=1 dtype="f32"
//   mel_weight_matrix (num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz) dtype="f32"
//   dft   (input, [dft_length]) axis=1 inverse=0 onesided=0
//   stft  (signal, frame_step, [window], [frame_length]) onesided=1
// `dtype` is a Kiln dtype name (the importer maps ONNX's output_datatype to it).
#include "kiln/graph/kernels.h"
#include "kiln/ops/signal_ops.h"

namespace kiln::graph {

namespace {

int64_t int_scalar(const Node& node, const std::vector<Tensor>& inputs, size_t i, std::string_view what) {
  const Tensor& t = required_input(node, inputs, i, what);
  if (!is_integral(t.dtype()) || t.numel() != 1)
    kernel_error(node, detail::concat(what, " must be one integer, got ", dtype_name(t.dtype()), shape_str(t.shape())));
  return static_cast<int64_t>(scalar_value(t, node, what));
}

bool flag(const Node& node, std::string_view name, int64_t fallback) {
  int64_t v = node.attr_int(name, fallback);
  if (v != 0 && v != 1) kernel_error(node, detail::concat(name, " must be 0 or 1, got ", v));
  return v == 1;
}

DType out_dtype(const Node& node) { return dtype_from_name(node.attr_string("dtype", "f32")); }

template <Tensor (*kWindow)(int64_t, bool, DType)>
std::vector<Tensor> window(const Node& node, const std::vector<Tensor>& inputs) {
  return {kWindow(int_scalar(node, inputs, 0, "size"), flag(node, "periodic", 1), out_dtype(node))};
}

std::vector<Tensor> mel_weight_matrix(const Node& node, const std::vector<Tensor>& inputs) {
  return {ops::mel_weight_matrix(int_scalar(node, inputs, 0, "num_mel_bins"), int_scalar(node, inputs, 1, "dft_length"),
                                 int_scalar(node, inputs, 2, "sample_rate"),
                                 scalar_value(required_input(node, inputs, 3, "lower_edge_hertz"), node, "lower_edge_hertz"),
                                 scalar_value(required_input(node, inputs, 4, "upper_edge_hertz"), node, "upper_edge_hertz"),
                                 out_dtype(node))};
}

std::vector<Tensor> dft(const Node& node, const std::vector<Tensor>& inputs) {
  std::optional<int64_t> length;
  if (optional_input(inputs, 1).defined()) length = int_scalar(node, inputs, 1, "dft_length");
  return {ops::dft(required_input(node, inputs, 0, "input"), node.attr_int("axis", 1), length, flag(node, "inverse", 0),
                   flag(node, "onesided", 0))};
}

std::vector<Tensor> stft(const Node& node, const std::vector<Tensor>& inputs) {
  std::optional<int64_t> length;
  if (optional_input(inputs, 3).defined()) length = int_scalar(node, inputs, 3, "frame_length");
  return {ops::stft(required_input(node, inputs, 0, "signal"), int_scalar(node, inputs, 1, "frame_step"),
                    optional_input(inputs, 2), length, flag(node, "onesided", 1))};
}

}  // namespace

void register_signal_kernels(KernelTable& t) {
  t.add("hann_window", window<ops::hann_window>);
  t.add("hamming_window", window<ops::hamming_window>);
  t.add("blackman_window", window<ops::blackman_window>);
  t.add("mel_weight_matrix", mel_weight_matrix);
  t.add("dft", dft);
  t.add("stft", stft);
}

}  // namespace kiln::graph
