// ONNX int8 operators and the nn operators whose Kiln graph op (ops/quant_ops.h,
// ops/inference_nn.h; graph/kernels_quant.cpp) takes the ONNX inputs and attributes unchanged.
// ConvTranspose with 3 spatial dims goes to conv_transpose_nd (ops/spatial_nd.h).
#include "kiln/io/onnx/onnx_convert.h"

namespace kiln::io {

namespace {

constexpr char kQuantize[] = "quantize_linear", kDequantize[] = "dequantize_linear",
               kDynamicQuantize[] = "dynamic_quantize_linear", kMatMulInteger[] = "matmul_integer",
               kConvInteger[] = "conv_integer", kQLinearMatMul[] = "qlinear_matmul", kQLinearConv[] = "qlinear_conv",
               kConvTranspose[] = "conv_transpose2d", kConvTransposeNd[] = "conv_transpose_nd",
               kInstanceNorm[] = "instance_norm", kResize[] = "resize";

// 1-d and 2-d on conv_transpose2d; 3-d (X's rank, or W's when X's is unknown, is 5) on conv_transpose_nd.
void conv_transpose(ConvertContext& ctx) {
  const Value* x = ctx.in(0);
  const Value* w = ctx.in(1);
  const Value* known = x && x->shape ? x : w && w->shape ? w : nullptr;
  if (known && known->shape->size() == 5)
    passthrough<kConvTransposeNd>(ctx);
  else
    passthrough<kConvTranspose>(ctx);
}

}  // namespace

void register_quant_converters(ConverterTable& t) {
  t.add("QuantizeLinear", passthrough<kQuantize>);
  t.add("DequantizeLinear", passthrough<kDequantize>);
  t.add("DynamicQuantizeLinear", passthrough<kDynamicQuantize>);
  t.add("MatMulInteger", passthrough<kMatMulInteger>);
  t.add("ConvInteger", passthrough<kConvInteger>);
  t.add("QLinearMatMul", passthrough<kQLinearMatMul>);
  t.add("QLinearConv", passthrough<kQLinearConv>);
  t.add("ConvTranspose", conv_transpose);
  t.add("InstanceNormalization", passthrough<kInstanceNorm>);
  t.add("Resize", passthrough<kResize>);
}

}  // namespace kiln::io
