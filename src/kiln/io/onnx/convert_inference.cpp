// ONNX operators whose Kiln graph op (ops/inference_ops.h, graph/kernels_inference.cpp) takes the
// ONNX inputs and attributes unchanged.
#include "kiln/io/onnx/onnx_convert.h"

namespace kiln::io {

namespace {

constexpr char kErf[] = "erf", kLeakyRelu[] = "leaky_relu", kHardSigmoid[] = "hard_sigmoid",
               kHardSwish[] = "hard_swish", kElu[] = "elu", kSelu[] = "selu", kSoftplus[] = "softplus",
               kSoftsign[] = "softsign", kReciprocal[] = "reciprocal", kFloor[] = "floor", kCeil[] = "ceil",
               kRound[] = "round", kSign[] = "sign", kSin[] = "sin", kCos[] = "cos", kAnd[] = "logical_and",
               kOr[] = "logical_or", kXor[] = "logical_xor", kMod[] = "mod", kTile[] = "tile",
               kRange[] = "range", kCumsum[] = "cumsum", kEinsum[] = "einsum", kShape[] = "shape_of",
               kConstantOfShape[] = "constant_of_shape";

// PRelu before opset 7 took a 1-d slope per channel (dim 1); later opsets broadcast the slope
// NumPy-style, so the old form becomes a (C, 1, ..., 1) slope.
void prelu(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "X");
  Value* slope = ctx.required_in(1, "slope");
  if (ctx.opset < 7 && x->shape && slope->shape && slope->shape->size() == 1 && x->shape->size() > 2) {
    std::vector<int64_t> axes;
    for (size_t i = 1; i + 1 < x->shape->size(); ++i) axes.push_back(static_cast<int64_t>(i));
    slope = ctx.temp("unsqueeze", {slope}, {{"axes", axes}}, slope->dtype);
  }
  ctx.emit("prelu", {x, slope});
}

}  // namespace

void register_inference_converters(ConverterTable& t) {
  t.add("Erf", passthrough<kErf>);
  t.add("LeakyRelu", passthrough<kLeakyRelu>);
  t.add("HardSigmoid", passthrough<kHardSigmoid>);
  t.add("HardSwish", passthrough<kHardSwish>);
  t.add("Elu", passthrough<kElu>);
  t.add("Selu", passthrough<kSelu>);
  t.add("Softplus", passthrough<kSoftplus>);
  t.add("Softsign", passthrough<kSoftsign>);
  t.add("Reciprocal", passthrough<kReciprocal>);
  t.add("Floor", passthrough<kFloor>);
  t.add("Ceil", passthrough<kCeil>);
  t.add("Round", passthrough<kRound>);
  t.add("Sign", passthrough<kSign>);
  t.add("Sin", passthrough<kSin>);
  t.add("Cos", passthrough<kCos>);
  t.add("And", passthrough<kAnd>);
  t.add("Or", passthrough<kOr>);
  t.add("Xor", passthrough<kXor>);
  t.add("Mod", passthrough<kMod>);
  t.add("PRelu", prelu);
  t.add("Tile", passthrough<kTile>);
  t.add("Range", passthrough<kRange>);
  t.add("CumSum", passthrough<kCumsum>);
  t.add("Einsum", passthrough<kEinsum>);
  t.add("Shape", passthrough<kShape>);
  t.add("ConstantOfShape", passthrough<kConstantOfShape>);
}

}  // namespace kiln::io
