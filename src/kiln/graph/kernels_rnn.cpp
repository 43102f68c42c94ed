// Graph kernels for the recurrent ops of ops/rnn_ops.h (ONNX RNN, GRU, LSTM), forward only.
// Graph form (inputs in ONNX order, absent optional inputs as null; attributes by ONNX name, with
// ONNX's defaults):
//   rnn  (X, W, R, B?, sequence_lens?, initial_h?)               -> (Y, Y_h)
//   gru  (X, W, R, B?, sequence_lens?, initial_h?)               -> (Y, Y_h)   linear_before_reset=0
//   lstm (X, W, R, B?, sequence_lens?, initial_h?, initial_c?, P?) -> (Y, Y_h, Y_c) input_forget=0
//   shared: hidden_size (absent: R's last dim) direction="forward"|"reverse"|"bidirectional"
//           activations=[names] activation_alpha=[...] activation_beta=[...] clip (absent: none)
//           layout=0|1 (1: batch first)
// A node may list fewer outputs than the op computes (ONNX's trailing optional outputs).
#include <variant>

#include "kiln/graph/kernels.h"
#include "kiln/ops/rnn_ops.h"

namespace kiln::graph {

namespace {

std::vector<std::string> string_list(const Node& node, std::string_view key) {
  auto it = node.attrs.find(key);
  if (it == node.attrs.end()) return {};
  if (const auto* v = std::get_if<std::vector<std::string>>(&it->second)) return *v;
  if (const auto* v = std::get_if<std::string>(&it->second)) return {*v};  // a one-name list
  kernel_error(node, detail::concat("attribute ", key, " must be a list of strings, got ", attr_str(it->second)));
}

std::vector<double> float_list(const Node& node, std::string_view key) {
  return node.has_attr(key) ? node.attr_floats(key) : std::vector<double>{};
}

ops::RnnOptions options(const Node& node, ops::RnnKind kind) {
  ops::RnnOptions opt;
  opt.kind = kind;
  opt.hidden_size = node.attr_int("hidden_size", 0);
  if (opt.hidden_size < 0) kernel_error(node, detail::concat("hidden_size must be positive, got ", opt.hidden_size));
  std::string dir = node.attr_string("direction", "forward");
  if (dir != "forward" && dir != "reverse" && dir != "bidirectional")
    kernel_error(node, detail::concat("direction must be forward, reverse or bidirectional, got '", dir, "'"));
  opt.direction = ops::rnn_direction_from_name(dir);
  const int64_t num_directions = opt.direction == ops::RnnDirection::bidirectional ? 2 : 1;
  try {
    opt.activations = ops::rnn_activations(kind, num_directions, string_list(node, "activations"),
                                           float_list(node, "activation_alpha"), float_list(node, "activation_beta"));
  } catch (const Error& e) {
    kernel_error(node, e.what());
  }
  if (node.has_attr("clip")) {
    double clip = node.attr_float("clip");
    if (!(clip > 0.0)) kernel_error(node, detail::concat("clip must be positive, got ", clip));
    opt.clip = static_cast<float>(clip);
  }
  opt.batch_first = flag_attr(node, "layout");
  if (kind == ops::RnnKind::gru) opt.linear_before_reset = node.attr_int("linear_before_reset", 0) != 0;
  if (kind == ops::RnnKind::lstm) opt.input_forget = flag_attr(node, "input_forget");
  return opt;
}

template <ops::RnnKind kKind>
std::vector<Tensor> recurrent(const Node& node, const std::vector<Tensor>& inputs) {
  ops::RnnInputs in;
  in.x = required_input(node, inputs, 0, "X");
  in.w = required_input(node, inputs, 1, "W");
  in.r = required_input(node, inputs, 2, "R");
  in.b = optional_input(inputs, 3);
  in.sequence_lens = optional_input(inputs, 4);
  in.initial_h = optional_input(inputs, 5);
  if (kKind == ops::RnnKind::lstm) {
    in.initial_c = optional_input(inputs, 6);
    in.p = optional_input(inputs, 7);
  } else if (inputs.size() > 6) {
    kernel_error(node, detail::concat("takes at most 6 inputs, got ", inputs.size()));
  }
  ops::RnnResult r = ops::rnn_forward(in, options(node, kKind));
  if (kKind == ops::RnnKind::lstm) return {r.y, r.y_h, r.y_c};
  return {r.y, r.y_h};
}

}  // namespace

void register_rnn_kernels(KernelTable& t) {
  t.add("rnn", recurrent<ops::RnnKind::rnn>);
  t.add("gru", recurrent<ops::RnnKind::gru>);
  t.add("lstm", recurrent<ops::RnnKind::lstm>);
}

}  // namespace kiln::graph
