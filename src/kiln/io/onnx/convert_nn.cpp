// ONNX neural-network operators -> Kiln's nn ops: Conv, Gemm, MatMul, pooling, normalisation and
// softmax, with auto_pad and opset-specific semantics resolved at import. 1-d and 2-d Conv and
// pooling run on the 2-d ops; 3-d, dilated max pooling and MaxPool's Indices on the N-d ops
// (ops/spatial_nd.h), which take the ONNX attributes as they are.
#include "kiln/io/onnx/onnx_convert.h"

#include <algorithm>

#include "kiln/ops/elementwise.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::io {

namespace {

std::optional<int64_t> rank_of(const Value* v) {
  if (!v || !v->shape) return std::nullopt;
  return static_cast<int64_t>(v->shape->size());
}

int64_t spatial_rank(ConvertContext& ctx, const Value* x) {
  std::optional<int64_t> r = rank_of(x);
  if (!r) ctx.unsupported("input of unknown rank");
  if (*r < 3) ctx.invalid("expects (N, C, spatial...)");
  if (*r > 5) ctx.unsupported(detail::concat(*r - 2, "-d spatial input (1-d to 3-d are supported)"));
  return *r - 2;
}

// Spatial attributes of Conv/pooling normalised to 2-d, the 1-d case as a height of 1.
struct Window {
  std::vector<int64_t> kernel, strides, pads, dilations;  // 2, 2, 4 (hb, wb, he, we), 2
};

Window window_attrs(ConvertContext& ctx, const Value* x, int64_t nd, std::vector<int64_t> kernel) {
  Window w;
  std::vector<int64_t> strides = ctx.attr_ints("strides", std::vector<int64_t>(nd, 1));
  std::vector<int64_t> dil = ctx.attr_ints("dilations", std::vector<int64_t>(nd, 1));
  std::vector<int64_t> pads = ctx.attr_ints("pads", std::vector<int64_t>(2 * nd, 0));
  if (static_cast<int64_t>(kernel.size()) != nd || static_cast<int64_t>(strides.size()) != nd ||
      static_cast<int64_t>(dil.size()) != nd || static_cast<int64_t>(pads.size()) != 2 * nd)
    ctx.invalid("kernel_shape, strides, dilations and pads do not match the spatial rank");
  std::string auto_pad = ctx.attr_string("auto_pad", "NOTSET");
  if (auto_pad == "VALID") {
    std::fill(pads.begin(), pads.end(), 0);
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    for (int64_t i = 0; i < nd; ++i) {
      const graph::Dim& d = (*x->shape)[static_cast<size_t>(2 + i)];
      if (!d.is_fixed()) ctx.unsupported("auto_pad SAME with a symbolic spatial size");
      int64_t out = (d.size + strides[i] - 1) / strides[i];
      int64_t total = std::max<int64_t>((out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - d.size, 0);
      int64_t small = total / 2, large = total - small;
      pads[i] = auto_pad == "SAME_UPPER" ? small : large;
      pads[i + nd] = auto_pad == "SAME_UPPER" ? large : small;
    }
  } else if (auto_pad != "NOTSET") {
    ctx.invalid(detail::concat("unknown auto_pad \"", auto_pad, "\""));
  }
  if (nd == 1) {
    w.kernel = {1, kernel[0]};
    w.strides = {1, strides[0]};
    w.dilations = {1, dil[0]};
    w.pads = {0, pads[0], 0, pads[1]};
  } else {
    w.kernel = kernel;
    w.strides = strides;
    w.dilations = dil;
    w.pads = pads;
  }
  return w;
}

Value* unsqueeze_h(ConvertContext& ctx, Value* v) {
  return ctx.temp("unsqueeze", {v}, {{"axes", std::vector<int64_t>{2}}}, v->dtype);
}

// Emits op on a 2-d form of x: 1-d inputs get a height of 1 and lose it again afterwards.
void emit_spatial(ConvertContext& ctx, std::string_view op, Value* x, std::vector<Value*> rest, Attrs attrs,
                  int64_t nd) {
  if (nd == 2) {
    std::vector<Value*> ins{x};
    ins.insert(ins.end(), rest.begin(), rest.end());
    ctx.emit(op, ins, std::move(attrs));
    return;
  }
  std::vector<Value*> ins{unsqueeze_h(ctx, x)};
  for (Value* r : rest) ins.push_back(r);
  Value* y = ctx.temp(op, ins, std::move(attrs), x->dtype);
  ctx.emit("squeeze", {y}, {{"axes", std::vector<int64_t>{2}}});
}

void conv(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "X");
  Value* w = ctx.required_in(1, "W");
  int64_t nd = spatial_rank(ctx, x);
  if (nd == 3) {
    std::vector<Value*> ins{x, w};
    if (ctx.in(2)) ins.push_back(ctx.in(2));
    ctx.emit("conv_nd", ins, ctx.all_attrs());
    return;
  }
  std::vector<int64_t> kernel = ctx.attr_ints("kernel_shape");
  if (kernel.empty()) {
    if (!w->shape || !graph::concrete_shape(*w->shape)) ctx.unsupported("kernel_shape not given and W's shape unknown");
    if (w->shape->size() != static_cast<size_t>(nd + 2))
      ctx.invalid(detail::concat("W has rank ", w->shape->size(), ", X has rank ", nd + 2));
    std::vector<int64_t> k;
    for (const auto& d : *w->shape) k.push_back(d.size);
    kernel.assign(k.begin() + 2, k.end());
  }
  Window win = window_attrs(ctx, x, nd, kernel);
  Attrs a{{"strides", win.strides}, {"pads", win.pads}, {"dilations", win.dilations}, {"group", ctx.attr_int("group", 1)}};
  Value* w2 = nd == 1 ? (w->is_constant() ? ctx.constant(ops::unsqueeze(w->constant, 2)) : unsqueeze_h(ctx, w)) : w;
  std::vector<Value*> rest{w2};
  if (ctx.in(2)) rest.push_back(ctx.in(2));
  emit_spatial(ctx, "conv2d", x, rest, std::move(a), nd);
}

template <bool kMax>
void pool(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "X");
  // Any second output (even an unnamed one) makes a two-output node, which only max_pool_nd has.
  const bool indices = kMax && ctx.num_outputs() > 1;
  int64_t nd = spatial_rank(ctx, x);
  std::vector<int64_t> dil = ctx.attr_ints("dilations");
  const bool dilated = std::any_of(dil.begin(), dil.end(), [](int64_t d) { return d != 1; });
  if (nd == 3 || dilated || indices) {
    graph::Node* n = ctx.emit(kMax ? "max_pool_nd" : "avg_pool_nd", {x}, ctx.all_attrs());
    if (n->outputs.size() > 1) n->outputs[1]->dtype = DType::i64;
    return;
  }
  Window win = window_attrs(ctx, x, nd, ctx.attr_ints("kernel_shape"));
  Attrs a{{"kernel_shape", win.kernel}, {"strides", win.strides}, {"pads", win.pads},
          {"ceil_mode", ctx.attr_int("ceil_mode", 0)}};
  if (!kMax) a["count_include_pad"] = ctx.attr_int("count_include_pad", 0);
  emit_spatial(ctx, kMax ? "max_pool2d" : "avg_pool2d", x, {}, std::move(a), nd);
}

template <bool kMax>
void global_pool(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "X");
  std::optional<int64_t> r = rank_of(x);
  if (!r || *r < 3) ctx.unsupported("input must be (N, C, spatial...) of known rank");
  std::vector<int64_t> axes;
  for (int64_t d = 2; d < *r; ++d) axes.push_back(d);
  ctx.emit(kMax ? "amax" : "mean", {x}, {{"axes", axes}, {"keepdims", int64_t{1}}});
}

void gemm(ConvertContext& ctx) {
  Value* a = ctx.required_in(0, "A");
  Value* b = ctx.required_in(1, "B");
  Value* c = ctx.in(2);
  double alpha = ctx.attr_float("alpha", 1.0), beta = ctx.attr_float("beta", 1.0);
  bool trans_a = ctx.attr_int("transA", 0) != 0, trans_b = ctx.attr_int("transB", 0) != 0;
  if (trans_a) a = ctx.temp("permute", {a}, {{"perm", std::vector<int64_t>{1, 0}}}, a->dtype);
  // Linear wants W as (out, in): B when transB, else B^T — folded now when B is a constant.
  Value* w = nullptr;
  if (trans_b) w = b;
  else if (b->is_constant() && b->constant.dim() == 2) w = ctx.constant(ops::contiguous(ops::transpose(b->constant, 0, 1)));
  // The bias must be (N) for linear: a constant (N) or (1, N) C qualifies.
  Value* bias = nullptr;
  bool bias_ok = !c;
  if (c && beta == 1.0 && c->is_constant()) {
    const Tensor& ct = c->constant;
    if (ct.dim() == 1 || (ct.dim() == 2 && ct.shape()[0] == 1)) {
      bias = ct.dim() == 1 ? c : ctx.constant(ops::reshape(ct, {ct.shape()[1]}));
      bias_ok = bias->constant.shape()[0] != 1 || (w && w->shape && !w->shape->empty() && (*w->shape)[0].size == 1);
    }
  }
  if (w && alpha == 1.0 && bias_ok) {
    std::vector<Value*> ins{a, w};
    if (bias) ins.push_back(bias);
    ctx.emit("linear", ins);
    return;
  }
  Value* bt = trans_b ? ctx.temp("permute", {b}, {{"perm", std::vector<int64_t>{1, 0}}}, b->dtype) : b;
  if (!c && alpha == 1.0) {
    ctx.emit("matmul", {a, bt});
    return;
  }
  Value* y = ctx.temp("matmul", {a, bt}, {}, a->dtype);
  Value* scale = alpha != 1.0 ? ctx.constant(Tensor::scalar(alpha, a->dtype)) : nullptr;
  if (!c) {
    ctx.emit("mul", {y, scale});
    return;
  }
  if (scale) y = ctx.temp("mul", {y, scale}, {}, a->dtype);
  if (beta != 1.0) c = ctx.temp("mul", {c, ctx.constant(Tensor::scalar(beta, c->dtype))}, {}, c->dtype);
  ctx.emit("add", {y, c});
}

void matmul(ConvertContext& ctx) { ctx.emit("matmul", {ctx.required_in(0, "A"), ctx.required_in(1, "B")}); }

void batch_norm(ConvertContext& ctx) {
  bool training = ctx.attr_int("training_mode", 0) != 0;
  if (!training)
    for (size_t k = 1; k < ctx.num_outputs(); ++k)
      if (!ctx.node.output(static_cast<int>(k)).empty()) ctx.unsupported("running statistics outputs");
  Attrs a{{"epsilon", ctx.attr_float("epsilon", 1e-5)}};
  if (training) {  // batch statistics, and the updated running ones as outputs 1 and 2
    a["training_mode"] = int64_t{1};
    a["momentum"] = ctx.attr_float("momentum", 0.9);
  }
  ctx.emit("batch_norm", {ctx.required_in(0, "X"), ctx.required_in(1, "scale"), ctx.required_in(2, "B"),
                          ctx.required_in(3, "input_mean"), ctx.required_in(4, "input_var")},
           std::move(a));
}

void layer_norm(ConvertContext& ctx) {
  ctx.emit("layer_norm", {ctx.required_in(0, "X"), ctx.in(1), ctx.in(2)},
           {{"axis", ctx.attr_int("axis", -1)}, {"epsilon", ctx.attr_float("epsilon", 1e-5)}});
}

// Softmax / LogSoftmax. Before opset 13 the input is coerced to 2-d at `axis` (default 1) and the
// normalisation runs over all dims from axis on: flatten, normalise, restore the shape.
template <bool kLog>
void softmax(ConvertContext& ctx) {
  const char* op = kLog ? "log_softmax" : "softmax";
  Value* x = ctx.required_in(0, "input");
  if (ctx.opset >= 13) {
    ctx.emit(op, {x}, {{"axis", ctx.attr_int("axis", -1)}});
    return;
  }
  std::optional<int64_t> r = rank_of(x);
  if (!r) ctx.unsupported("input of unknown rank");
  int64_t axis = ctx.attr_int("axis", 1);
  if (axis < 0) axis += *r;
  if (axis == *r - 1 || *r <= 1) {
    ctx.emit(op, {x}, {{"axis", int64_t{-1}}});
    return;
  }
  Value* shape = ctx.temp("shape_of", {x}, {}, DType::i64);
  Value* flat = ctx.temp("flatten", {x}, {{"start_dim", axis}, {"end_dim", int64_t{-1}}}, x->dtype);
  Value* y = ctx.temp(op, {flat}, {{"axis", int64_t{-1}}}, x->dtype);
  ctx.emit("reshape", {y, shape});
}

}  // namespace

void register_nn_converters(ConverterTable& t) {
  t.add("Conv", conv);
  t.add("MaxPool", pool<true>);
  t.add("AveragePool", pool<false>);
  t.add("GlobalAveragePool", global_pool<false>);
  t.add("GlobalMaxPool", global_pool<true>);
  t.add("Gemm", gemm);
  t.add("MatMul", matmul);
  t.add("BatchNormalization", batch_norm);
  t.add("LayerNormalization", layer_norm);
  t.add("Softmax", softmax<false>);
  t.add("LogSoftmax", softmax<true>);
}

}  // namespace kiln::io
