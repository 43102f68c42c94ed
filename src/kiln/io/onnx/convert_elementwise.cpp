// ONNX elementwise operators -> Kiln's broadcasting and unary ops.
#include "kiln/io/onnx/onnx_convert.h"
#include "kiln/io/onnx/tensor_proto.h"

namespace kiln::io {

namespace {

// Before opset 7 an arithmetic op broadcast only with broadcast=1, and then aligned B's dims
// with A's starting at `axis` (default: the trailing dims, as NumPy does).
Value* legacy_broadcast(ConvertContext& ctx, Value* a, Value* b) {
  if (ctx.opset >= 7 || ctx.attr_int("broadcast", 0) == 0 || !ctx.has_attr("axis")) return b;
  if (!a->shape || !b->shape) ctx.unsupported("broadcast with axis on inputs of unknown rank");
  auto ra = static_cast<int64_t>(a->shape->size()), rb = static_cast<int64_t>(b->shape->size());
  int64_t axis = ctx.attr_int("axis", 0);
  if (axis < 0) axis += ra;
  int64_t trailing = ra - axis - rb;
  if (axis < 0 || trailing < 0) ctx.invalid("broadcast axis out of range");
  if (trailing == 0) return b;
  std::vector<int64_t> axes;
  for (int64_t i = 0; i < trailing; ++i) axes.push_back(rb + i);
  return ctx.temp("unsqueeze", {b}, {{"axes", axes}}, b->dtype);
}

template <const char* kOp>
void binary(ConvertContext& ctx) {
  Value* a = ctx.required_in(0, "A");
  ctx.emit(kOp, {a, legacy_broadcast(ctx, a, ctx.required_in(1, "B"))});
}

template <const char* kOp>
void unary(ConvertContext& ctx) {
  ctx.emit(kOp, {ctx.required_in(0, "X")});
}

template <const char* kOp>
void comparison(ConvertContext& ctx) {
  ctx.emit(kOp, {ctx.required_in(0, "A"), ctx.required_in(1, "B")}, {}, DType::b8);
}

// Max, Min, Sum, Mean: variadic, folded left to right.
template <const char* kOp, bool kMean>
void variadic(ConvertContext& ctx) {
  size_t n = ctx.num_inputs();
  if (n == 0) ctx.invalid("needs at least one input");
  Value* acc = ctx.required_in(0, "data_0");
  if (n == 1 && !kMean) {
    ctx.emit("clone", {acc});
    return;
  }
  for (size_t i = 1; i < n; ++i) {
    Value* next = ctx.required_in(i, "data");
    if (i + 1 == n && !kMean) {
      ctx.emit(kOp, {acc, next});
      return;
    }
    acc = ctx.temp(kOp, {acc, next}, {}, acc->dtype);
  }
  Value* count = ctx.constant(Tensor::scalar(static_cast<double>(n), acc->dtype));
  ctx.emit("div", {acc, count});
}

void clip(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "input");
  if (ctx.opset < 11) {
    Attrs a;
    if (ctx.has_attr("min")) a["min"] = ctx.attr_float("min", 0);
    if (ctx.has_attr("max")) a["max"] = ctx.attr_float("max", 0);
    ctx.emit("clamp", {x}, std::move(a));
    return;
  }
  ctx.emit("clamp", {x, ctx.in(1), ctx.in(2)});
}

void cast(ConvertContext& ctx) {
  auto to = static_cast<int32_t>(ctx.attr_int("to", 0));
  DType dt = dtype_from_onnx(to, "Cast 'to'");
  ctx.emit("to", {ctx.required_in(0, "input")}, {{"dtype", std::string(dtype_name(dt))}}, dt);
}

void identity(ConvertContext& ctx) { ctx.alias_output(0, ctx.required_in(0, "input")); }

// Dropout: the identity at inference. From opset 12 a training_mode input (not known to be
// false) makes it drop at random: the graph op then takes ratio and training_mode, and the seed.
void dropout(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "data");
  if (ctx.opset >= 12 && ctx.in(2)) {
    std::optional<Tensor> training = ctx.const_in(2);
    std::optional<Tensor> ratio = ctx.const_in(1);
    const bool inference = (training && training->item() == 0.0) || (ratio && ratio->item() == 0.0);
    if (!inference) {
      Attrs a;
      if (ctx.has_attr("seed")) a["seed"] = ctx.attr_int("seed", 0);
      ctx.emit("dropout", {x, ctx.in(1), ctx.in(2)}, std::move(a));
      return;
    }
  }
  if (ctx.num_outputs() < 2 || ctx.node.output(1).empty()) {
    ctx.alias_output(0, x);
    return;
  }
  ctx.emit("dropout", {x});
}

void where(ConvertContext& ctx) {
  ctx.emit("where", {ctx.required_in(0, "condition"), ctx.required_in(1, "X"), ctx.required_in(2, "Y")});
}

constexpr char kAdd[] = "add", kSub[] = "sub", kMul[] = "mul", kDiv[] = "div", kPow[] = "pow";
constexpr char kMax[] = "maximum", kMin[] = "minimum";
constexpr char kEq[] = "eq", kLt[] = "lt", kGt[] = "gt", kLe[] = "le", kGe[] = "ge";
constexpr char kRelu[] = "relu", kSigmoid[] = "sigmoid", kTanh[] = "tanh", kExp[] = "exp", kLog[] = "log";
constexpr char kSqrt[] = "sqrt", kNeg[] = "neg", kAbs[] = "abs", kNot[] = "logical_not";

}  // namespace

void register_elementwise_converters(ConverterTable& t) {
  t.add("Add", binary<kAdd>);
  t.add("Sub", binary<kSub>);
  t.add("Mul", binary<kMul>);
  t.add("Div", binary<kDiv>);
  t.add("Pow", binary<kPow>);
  t.add("Equal", comparison<kEq>);
  t.add("Less", comparison<kLt>);
  t.add("Greater", comparison<kGt>);
  t.add("LessOrEqual", comparison<kLe>);
  t.add("GreaterOrEqual", comparison<kGe>);
  t.add("Max", variadic<kMax, false>);
  t.add("Min", variadic<kMin, false>);
  t.add("Sum", variadic<kAdd, false>);
  t.add("Mean", variadic<kAdd, true>);
  t.add("Relu", unary<kRelu>);
  t.add("Sigmoid", unary<kSigmoid>);
  t.add("Tanh", unary<kTanh>);
  t.add("Exp", unary<kExp>);
  t.add("Log", unary<kLog>);
  t.add("Sqrt", unary<kSqrt>);
  t.add("Neg", unary<kNeg>);
  t.add("Abs", unary<kAbs>);
  t.add("Not", unary<kNot>);
  t.add("Clip", clip);
  t.add("Cast", cast);
  t.add("Identity", identity);
  t.add("Dropout", dropout);
  t.add("Where", where);
}

}  // namespace kiln::io
