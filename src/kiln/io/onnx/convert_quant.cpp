// ONNX int8 operators and the nn operators whose Kiln graph op (ops/quant_ops.h,
// ops/inference_nn.h; graph/kernels_quant.cpp) takes the ONNX inputs and attributes unchanged.
#include "kiln/io/onnx/onnx_convert.h"

namespace kiln::io {

namespace {

constexpr char kQuantize[] = "quantize_linear", kDequantize[] = "dequantize_linear",
               kDynamicQuantize[] = "dynamic_quantize_linear", kMatMulInteger[] = "matmul_integer",
               kConvInteger[] = "conv_integer", kQLinearMatMul[] = "qlinear_matmul", kQLinearConv[] = "qlinear_conv",
               kConvTranspose[] = "conv_transpose2d", kInstanceNorm[] = "instance_norm", kResize[] = "resize";

}  // namespace

void register_quant_converters(ConverterTable& t) {
  t.add("QuantizeLinear", passthrough<kQuantize>);
  t.add("DequantizeLinear", passthrough<kDequantize>);
  t.add("DynamicQuantizeLinear", passthrough<kDynamicQuantize>);
  t.add("MatMulInteger", passthrough<kMatMulInteger>);
  t.add("ConvInteger", passthrough<kConvInteger>);
  t.add("QLinearMatMul", passthrough<kQLinearMatMul>);
  t.add("QLinearConv", passthrough<kQLinearConv>);
  t.add("ConvTranspose", passthrough<kConvTranspose>);
  t.add("InstanceNormalization", passthrough<kInstanceNorm>);
  t.add("Resize", passthrough<kResize>);
}

}  // namespace kiln::io
