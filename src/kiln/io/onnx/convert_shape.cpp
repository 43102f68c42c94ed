// ONNX operators that move elements or describe shapes -> Kiln's shape ops, and Constant.
#include "kiln/io/onnx/onnx_convert.h"
#include "kiln/io/onnx/tensor_proto.h"

namespace kiln::io {

namespace {

void constant(ConvertContext& ctx) {
  Tensor t;
  if (auto v = ctx.attr_tensor("value")) t = *v;
  else if (ctx.has_attr("value_float")) t = Tensor::scalar(ctx.attr_float("value_float", 0), DType::f32);
  else if (ctx.has_attr("value_int")) t = Tensor::scalar(static_cast<double>(ctx.attr_int("value_int", 0)), DType::i64);
  else if (ctx.has_attr("value_floats")) {
    std::vector<float> v;
    for (double d : ctx.attr_floats("value_floats")) v.push_back(static_cast<float>(d));
    t = Tensor::from_vector(v);
  } else if (ctx.has_attr("value_ints")) t = Tensor::from_vector(ctx.attr_ints("value_ints"));
  else if (ctx.has_attr("sparse_value")) ctx.unsupported("sparse_value");
  else if (ctx.has_attr("value_string") || ctx.has_attr("value_strings")) ctx.unsupported("string constants");
  else ctx.invalid("has no value attribute");
  const std::string& name = ctx.node.output(0);
  ctx.alias_output(0, ctx.g.add_constant(ctx.g.find_value(name) ? "" : name, t));
}

void reshape(ConvertContext& ctx) {
  if (ctx.opset < 5) {  // the target shape was an attribute
    ctx.emit("reshape", {ctx.required_in(0, "data")}, {{"shape", ctx.attr_ints("shape")}});
    return;
  }
  ctx.emit("reshape", {ctx.required_in(0, "data"), ctx.required_in(1, "shape")},
           {{"allowzero", ctx.attr_int("allowzero", 0)}});
}

void flatten(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "input");
  int64_t axis = ctx.attr_int("axis", 1);
  if (!x->shape) ctx.unsupported("input of unknown rank");
  auto rank = static_cast<int64_t>(x->shape->size());
  if (axis < 0) axis += rank;
  if (axis < 0 || axis > rank) ctx.invalid("axis out of range");
  if (axis == 0) {
    ctx.emit("reshape", {x}, {{"shape", std::vector<int64_t>{1, -1}}});
  } else if (axis == rank) {
    Value* flat = ctx.temp("flatten", {x}, {{"start_dim", int64_t{0}}, {"end_dim", int64_t{-1}}}, x->dtype);
    ctx.emit("unsqueeze", {flat}, {{"axes", std::vector<int64_t>{1}}});
  } else {
    Value* head = ctx.temp("flatten", {x}, {{"start_dim", int64_t{0}}, {"end_dim", axis - 1}}, x->dtype);
    ctx.emit("flatten", {head}, {{"start_dim", int64_t{1}}, {"end_dim", int64_t{-1}}});
  }
}

void transpose(ConvertContext& ctx) {
  Attrs a;
  if (ctx.has_attr("perm")) a["perm"] = ctx.attr_ints("perm");
  ctx.emit("permute", {ctx.required_in(0, "data")}, std::move(a));
}

// Squeeze / Unsqueeze: axes are an attribute before opset 13, an input from 13.
template <bool kUnsqueeze>
void squeeze_like(ConvertContext& ctx) {
  const char* op = kUnsqueeze ? "unsqueeze" : "squeeze";
  Value* x = ctx.required_in(0, "data");
  if (ctx.opset < 13) {
    Attrs a;
    if (ctx.has_attr("axes")) a["axes"] = ctx.attr_ints("axes");
    else if (kUnsqueeze) ctx.invalid("missing axes");
    ctx.emit(op, {x}, std::move(a));
  } else {
    if (kUnsqueeze && !ctx.in(1)) ctx.invalid("missing axes");
    ctx.emit(op, {x, ctx.in(1)});
  }
}

void concat(ConvertContext& ctx) {
  std::vector<Value*> xs;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) xs.push_back(ctx.required_in(i, "inputs"));
  ctx.emit("cat", xs, {{"axis", ctx.attr_int("axis", 0)}});
}

void split(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "input");
  Attrs a{{"axis", ctx.attr_int("axis", 0)}};
  if (ctx.opset < 13) {
    if (ctx.has_attr("split")) a["sizes"] = ctx.attr_ints("split");
    ctx.emit("split", {x}, std::move(a));
  } else {
    ctx.emit("split", {x, ctx.in(1)}, std::move(a));
  }
}

void slice(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "data");
  if (ctx.opset < 10) {
    std::vector<int64_t> starts = ctx.attr_ints("starts"), ends = ctx.attr_ints("ends");
    std::vector<int64_t> axes = ctx.attr_ints("axes");
    std::vector<Value*> ins{x, ctx.int_constant(starts), ctx.int_constant(ends)};
    if (!axes.empty()) ins.push_back(ctx.int_constant(axes));
    ctx.emit("slice", ins);
    return;
  }
  ctx.emit("slice", {x, ctx.required_in(1, "starts"), ctx.required_in(2, "ends"), ctx.in(3), ctx.in(4)});
}

void gather(ConvertContext& ctx) {
  ctx.emit("index_select", {ctx.required_in(0, "data"), ctx.required_in(1, "indices")},
           {{"axis", ctx.attr_int("axis", 0)}});
}

void gather_elements(ConvertContext& ctx) {
  ctx.emit("gather", {ctx.required_in(0, "data"), ctx.required_in(1, "indices")}, {{"axis", ctx.attr_int("axis", 0)}});
}

void expand(ConvertContext& ctx) {
  ctx.emit("expand", {ctx.required_in(0, "input"), ctx.required_in(1, "shape")});
}

void pad(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "data");
  std::string mode = ctx.attr_string("mode", "constant");
  if (ctx.opset < 11) {
    std::vector<int64_t> pads = ctx.attr_ints("pads");
    Value* value = ctx.constant(Tensor::scalar(ctx.attr_float("value", 0.0), x->dtype));
    ctx.emit("pad_mode", {x, ctx.int_constant(pads), value}, {{"mode", mode}});
    return;
  }
  ctx.emit("pad_mode", {x, ctx.required_in(1, "pads"), ctx.in(2)}, {{"mode", mode}});
}

void topk(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "X");
  Attrs a{{"axis", ctx.attr_int("axis", -1)}, {"largest", ctx.attr_int("largest", 1)}};
  if (ctx.attr_int("sorted", 1) == 0) {}  // sorted output is a valid answer for sorted=0
  if (ctx.opset < 10) {
    a["k"] = ctx.attr_int("k", 0);
    ctx.emit("topk", {x}, std::move(a));
  } else {
    ctx.emit("topk", {x, ctx.required_in(1, "K")}, std::move(a));
  }
}

}  // namespace

void register_shape_converters(ConverterTable& t) {
  t.add("Constant", constant);
  t.add("Reshape", reshape);
  t.add("Flatten", flatten);
  t.add("Transpose", transpose);
  t.add("Squeeze", squeeze_like<false>);
  t.add("Unsqueeze", squeeze_like<true>);
  t.add("Concat", concat);
  t.add("Split", split);
  t.add("Slice", slice);
  t.add("Gather", gather);
  t.add("GatherElements", gather_elements);
  t.add("Expand", expand);
  t.add("Pad", pad);
  t.add("TopK", topk);
}

}  // namespace kiln::io
