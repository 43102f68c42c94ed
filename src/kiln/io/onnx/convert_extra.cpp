// ONNX operators -> the ops of ops/inference_extra.h (graph form in graph/kernels_extra.cpp), the
// ONNX losses (-> cross_entropy / nll_loss in their ONNX graph form) and a few ops that need no
// op of their own (CastLike -> to, Size -> numel, ReduceProd -> prod).
#include "kiln/io/onnx/onnx_convert.h"
#include "kiln/io/onnx/tensor_proto.h"

namespace kiln::io {

namespace {

// Hardmax: opset 13 takes the max along `axis` (default -1); before, over dims [axis, rank)
// flattened together (default axis 1).
void hardmax(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "input");
  if (ctx.opset >= 13) {
    ctx.emit("hardmax", {x}, {{"axis", ctx.attr_int("axis", -1)}});
    return;
  }
  ctx.emit("hardmax", {x}, {{"axis", ctx.attr_int("axis", 1)}, {"coerce_2d", int64_t{1}}});
}

// EyeLike's dtype is an ONNX TensorProto element type; the graph form takes a dtype name.
void eye_like(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "input");
  Attrs a{{"k", ctx.attr_int("k", 0)}};
  DType dt = x->dtype;
  if (ctx.has_attr("dtype")) {
    dt = dtype_from_onnx(static_cast<int32_t>(ctx.attr_int("dtype", 0)), "EyeLike 'dtype'");
    a["dtype"] = std::string(dtype_name(dt));
  }
  ctx.emit("eye_like", {x}, std::move(a), dt);
}

void one_hot(ConvertContext& ctx) {
  Value* values = ctx.required_in(2, "values");
  ctx.emit("one_hot", {ctx.required_in(0, "indices"), ctx.required_in(1, "depth"), values},
           {{"axis", ctx.attr_int("axis", -1)}}, values->dtype);
}

void size(ConvertContext& ctx) { ctx.emit("numel", {ctx.required_in(0, "data")}, {}, DType::i64); }

// CastLike(x, like): Cast to like's element type.
void cast_like(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "input");
  DType dt = ctx.required_in(1, "target_type")->dtype;
  ctx.emit("to", {x}, {{"dtype", std::string(dtype_name(dt))}}, dt);
}

void reduce_prod(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "data");
  Attrs a{{"keepdims", ctx.attr_int("keepdims", 1)}, {"noop_with_empty_axes", ctx.attr_int("noop_with_empty_axes", 0)}};
  if (ctx.has_attr("axes")) a["axes"] = ctx.attr_ints("axes");
  ctx.emit("prod", {x, ctx.in(1)}, std::move(a));
}

// NegativeLogLikelihoodLoss / SoftmaxCrossEntropyLoss: (input, target, [weight]) with
// reduction and an optional ignore_index; the graph ops take them unchanged.
template <const char* kOp>
void loss(ConvertContext& ctx) {
  std::string reduction = ctx.attr_string("reduction", "mean");
  if (reduction != "mean" && reduction != "sum" && reduction != "none")
    ctx.invalid("reduction must be 'none', 'sum' or 'mean', got '" + reduction + "'");
  Attrs a{{"reduction", reduction}};
  if (ctx.has_attr("ignore_index")) a["ignore_index"] = ctx.attr_int("ignore_index", 0);
  std::vector<Value*> inputs{ctx.required_in(0, "scores"), ctx.required_in(1, "labels")};
  if (Value* w = ctx.in(2)) inputs.push_back(w);
  ctx.emit(kOp, std::move(inputs), std::move(a));
}

constexpr char kTan[] = "tan", kSinh[] = "sinh", kCosh[] = "cosh", kAsin[] = "asin", kAcos[] = "acos", kAtan[] = "atan",
               kAsinh[] = "asinh", kAcosh[] = "acosh", kAtanh[] = "atanh", kCelu[] = "celu", kShrink[] = "shrink",
               kThresholdedRelu[] = "thresholded_relu", kIsNan[] = "is_nan", kIsInf[] = "is_inf", kTrilu[] = "trilu",
               kNllLoss[] = "nll_loss", kCrossEntropy[] = "cross_entropy";

}  // namespace

void register_extra_converters(ConverterTable& t) {
  t.add("Tan", passthrough<kTan>);
  t.add("Sinh", passthrough<kSinh>);
  t.add("Cosh", passthrough<kCosh>);
  t.add("Asin", passthrough<kAsin>);
  t.add("Acos", passthrough<kAcos>);
  t.add("Atan", passthrough<kAtan>);
  t.add("Asinh", passthrough<kAsinh>);
  t.add("Acosh", passthrough<kAcosh>);
  t.add("Atanh", passthrough<kAtanh>);
  t.add("Celu", passthrough<kCelu>);
  t.add("Shrink", passthrough<kShrink>);
  t.add("ThresholdedRelu", passthrough<kThresholdedRelu>);
  t.add("IsNaN", passthrough<kIsNan>);
  t.add("IsInf", passthrough<kIsInf>);
  t.add("Trilu", passthrough<kTrilu>);
  t.add("Hardmax", hardmax);
  t.add("EyeLike", eye_like);
  t.add("OneHot", one_hot);
  t.add("Size", size);
  t.add("CastLike", cast_like);
  t.add("ReduceProd", reduce_prod);
  t.add("NegativeLogLikelihoodLoss", loss<kNllLoss>);
  t.add("SoftmaxCrossEntropyLoss", loss<kCrossEntropy>);
}

}  // namespace kiln::io
