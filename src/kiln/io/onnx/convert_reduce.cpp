// ONNX reductions -> Kiln's reduction ops. Axes are an attribute up to opset 12 (ReduceSum) or
// 17 (the others) and an input after; Kiln's graph form takes either.
#include "kiln/io/onnx/onnx_convert.h"

namespace kiln::io {

namespace {

template <const char* kOp>
void reduce(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "data");
  Attrs a{{"keepdims", ctx.attr_int("keepdims", 1)},
          {"noop_with_empty_axes", ctx.attr_int("noop_with_empty_axes", 0)}};
  if (ctx.has_attr("axes")) a["axes"] = ctx.attr_ints("axes");
  ctx.emit(kOp, {x, ctx.in(1)}, std::move(a));
}

// ReduceSumSquare, ReduceL1, ReduceL2, ReduceLogSum: an elementwise step around a sum.
template <int kKind>  // 0 sum-square, 1 L1, 2 L2, 3 log-sum
void reduce_composite(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "data");
  Attrs a{{"keepdims", ctx.attr_int("keepdims", 1)},
          {"noop_with_empty_axes", ctx.attr_int("noop_with_empty_axes", 0)}};
  if (ctx.has_attr("axes")) a["axes"] = ctx.attr_ints("axes");
  Value* pre = x;
  if (kKind == 0 || kKind == 2) pre = ctx.temp("mul", {x, x}, {}, x->dtype);
  if (kKind == 1) pre = ctx.temp("abs", {x}, {}, x->dtype);
  if (kKind == 0 || kKind == 1) {
    ctx.emit("sum", {pre, ctx.in(1)}, std::move(a));
    return;
  }
  Value* s = ctx.temp("sum", {pre, ctx.in(1)}, std::move(a), x->dtype);
  ctx.emit(kKind == 2 ? "sqrt" : "log", {s});
}

template <bool kMax>
void arg_reduce(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "data");
  Value* src = kMax ? x : ctx.temp("neg", {x}, {}, x->dtype);
  ctx.emit("argmax", {src},
           {{"axis", ctx.attr_int("axis", 0)},
            {"keepdims", ctx.attr_int("keepdims", 1)},
            {"select_last_index", ctx.attr_int("select_last_index", 0)}},
           DType::i64);
}

constexpr char kSum[] = "sum", kMean[] = "mean", kMax[] = "amax", kMin[] = "min", kLse[] = "logsumexp";

}  // namespace

void register_reduce_converters(ConverterTable& t) {
  t.add("ReduceSum", reduce<kSum>);
  t.add("ReduceMean", reduce<kMean>);
  t.add("ReduceMax", reduce<kMax>);
  t.add("ReduceMin", reduce<kMin>);
  t.add("ReduceLogSumExp", reduce<kLse>);
  t.add("ReduceSumSquare", reduce_composite<0>);
  t.add("ReduceL1", reduce_composite<1>);
  t.add("ReduceL2", reduce_composite<2>);
  t.add("ReduceLogSum", reduce_composite<3>);
  t.add("ArgMax", arg_reduce<true>);
  t.add("ArgMin", arg_reduce<false>);
}

}  // namespace kiln::io
