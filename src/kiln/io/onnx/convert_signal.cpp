// ONNX signal operators (opset 17) whose Kiln graph ops are in ops/signal_ops.h (graph form in
// graph/kernels_signal.cpp): HannWindow, HammingWindow, BlackmanWindow, MelWeightMatrix, DFT, STFT.
#include "kiln/io/onnx/onnx_convert.h"
#include "kiln/io/onnx/tensor_proto.h"

namespace kiln::io {

namespace {

constexpr char kDft[] = "dft", kStft[] = "stft";

// output_datatype (an ONNX element type, default FLOAT) -> the graph op's dtype attribute.
DType output_dtype(ConvertContext& ctx) {
  return dtype_from_onnx(static_cast<int32_t>(ctx.attr_int("output_datatype", 1)), "output_datatype");
}

template <const char* kKilnOp>
void window(ConvertContext& ctx) {
  DType dt = output_dtype(ctx);
  int64_t periodic = ctx.attr_int("periodic", 1);
  if (periodic != 0 && periodic != 1) ctx.invalid(detail::concat("periodic must be 0 or 1, got ", periodic));
  ctx.emit(kKilnOp, {ctx.required_in(0, "size")}, {{"periodic", periodic}, {"dtype", std::string(dtype_name(dt))}}, dt);
}
constexpr char kHann[] = "hann_window", kHamming[] = "hamming_window", kBlackman[] = "blackman_window";

void mel_weight_matrix(ConvertContext& ctx) {
  DType dt = output_dtype(ctx);
  std::vector<Value*> inputs;
  for (size_t i = 0; i < 5; ++i) {
    static const char* const kNames[] = {"num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz",
                                         "upper_edge_hertz"};
    inputs.push_back(ctx.required_in(i, kNames[i]));
  }
  ctx.emit("mel_weight_matrix", inputs, {{"dtype", std::string(dtype_name(dt))}}, dt);
}

}  // namespace

void register_signal_converters(ConverterTable& t) {
  t.add("HannWindow", window<kHann>);
  t.add("HammingWindow", window<kHamming>);
  t.add("BlackmanWindow", window<kBlackman>);
  t.add("MelWeightMatrix", mel_weight_matrix);
  t.add("DFT", passthrough<kDft>);
  t.add("STFT", passthrough<kStft>);
}

}  // namespace kiln::io
