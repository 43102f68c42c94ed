// ONNX RNN, GRU and LSTM -> the recurrent graph ops of ops/rnn_ops.h (graph form in
// graph/kernels_rnn.cpp: ONNX's inputs and attributes, unchanged). The converter checks what the
// kernels cannot run (dtypes other than f32, unknown activations, bad attribute values) at import,
// so a model fails when it is loaded, naming the node, rather than at its first run.
#include "kiln/io/onnx/onnx_convert.h"
#include "kiln/ops/rnn_ops.h"

namespace kiln::io {

namespace {

void check_flag(ConvertContext& ctx, std::string_view name) {
  int64_t v = ctx.attr_int(name, 0);
  if (v != 0 && v != 1) ctx.unsupported(detail::concat(name, "=", v, " (0 or 1)"));
}

template <ops::RnnKind kKind>
void recurrent(ConvertContext& ctx) {
  constexpr bool kLstm = kKind == ops::RnnKind::lstm;
  constexpr const char* kOp = kKind == ops::RnnKind::rnn ? "rnn" : kKind == ops::RnnKind::gru ? "gru" : "lstm";
  const size_t max_inputs = kLstm ? 8 : 6;
  if (ctx.num_inputs() > max_inputs) ctx.invalid(detail::concat("takes at most ", max_inputs, " inputs, got ", ctx.num_inputs()));
  if (ctx.num_outputs() > (kLstm ? 3u : 2u)) ctx.invalid(detail::concat("has ", ctx.num_outputs(), " outputs"));
  std::vector<Value*> inputs;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) inputs.push_back(ctx.in(i));
  while (!inputs.empty() && !inputs.back()) inputs.pop_back();
  const char* names[] = {"X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"};
  for (size_t i = 0; i < 3; ++i) ctx.required_in(i, names[i]);
  for (size_t i = 0; i < inputs.size(); ++i)
    if (i != 4 && inputs[i] && inputs[i]->dtype != DType::f32)
      ctx.unsupported(detail::concat("input ", names[i], " of dtype ", dtype_name(inputs[i]->dtype),
                                     " (recurrent layers run in float32 only)"));
  if (inputs.size() > 4 && inputs[4] && inputs[4]->dtype != DType::i32 && inputs[4]->dtype != DType::i64)
    ctx.invalid(detail::concat("sequence_lens must be int32, got ", dtype_name(inputs[4]->dtype)));

  std::string dir = ctx.attr_string("direction", "forward");
  if (dir != "forward" && dir != "reverse" && dir != "bidirectional")
    ctx.unsupported(detail::concat("direction '", dir, "' (forward, reverse or bidirectional)"));
  try {
    std::vector<std::string> acts;
    if (const auto* a = ctx.find_attr("activations")) acts.assign(a->strings().begin(), a->strings().end());
    ops::rnn_activations(kKind, dir == "bidirectional" ? 2 : 1, acts, ctx.attr_floats("activation_alpha"),
                         ctx.attr_floats("activation_beta"));
  } catch (const Error& e) {
    ctx.unsupported(e.what());
  }
  if (ctx.has_attr("clip") && !(ctx.attr_float("clip", 0.0) > 0.0))
    ctx.invalid(detail::concat("clip must be positive, got ", ctx.attr_float("clip", 0.0)));
  if (ctx.attr_int("hidden_size", 1) <= 0) ctx.invalid("hidden_size must be positive");
  check_flag(ctx, "layout");
  if (kKind == ops::RnnKind::gru) check_flag(ctx, "linear_before_reset");
  if (kLstm) check_flag(ctx, "input_forget");

  Attrs attrs = ctx.all_attrs();
  attrs.erase("output_sequence");  // opset 1 only: whether Y is produced, which emit already knows
  ctx.emit(kOp, inputs, std::move(attrs), DType::f32);
}

}  // namespace

void register_rnn_converters(ConverterTable& t) {
  t.add("RNN", recurrent<ops::RnnKind::rnn>);
  t.add("GRU", recurrent<ops::RnnKind::gru>);
  t.add("LSTM", recurrent<ops::RnnKind::lstm>);
}

}  // namespace kiln::io
