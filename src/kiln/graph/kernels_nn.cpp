// Graph kernels for the neural-network ops (inference forms). Graph form, ONNX attribute names:
//   matmul        (a, b): NumPy semantics
//   linear        (x, w, [b], [residual]): w is (out, in); residual (the output's shape) is added last
//   linear_act    (x, w, [b], [residual]) {activation: "none" | "relu" | "gelu" | "gelu_tanh"}:
//                 act(x w^T + b) + residual
//   conv2d        (x, w, [b]) {strides, pads (h_begin, w_begin, h_end, w_end), dilations, group,
//                              activation: "none" | "relu",
//                              pool: "max" with pool_kernel_shape, pool_strides, pool_pads,
//                              pool_ceil_mode — a max_pool2d of the output fused in}
//   max_pool2d, avg_pool2d (x) {kernel_shape, strides, pads (4), ceil_mode, count_include_pad (avg)}
//   adaptive_avg_pool2d (x) {output_size}
//   batch_norm    (x, scale, bias, mean, var) {epsilon}: inference statistics, any rank >= 2
//   layer_norm    (x, [scale], [bias]) {axis, epsilon}: normalises dims axis.. of x
//   softmax, log_softmax (x) {axis}
//   embedding     (weight, indices)
//   scaled_dot_product_attention (q, k, v) {causal}
//   dropout       (x, [ratio], [training_mode]) {seed}: the identity (mask all true) unless
//                 training_mode is true and ratio > 0 (default 0.5): then y = x * mask / (1 - ratio)
//                 with mask = U >= ratio, U uniform in [0, 1) from the stream of ONNX's reference
//                 implementation (NumPy's legacy MT19937 seeded with `seed`, as np.random.seed),
//                 so a seeded graph drops exactly what the reference drops; no seed: a fresh one
#include <algorithm>
#include <random>
#include <limits>

#include "kiln/graph/kernels.h"
#include "kiln/graph/numpy_random.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/linalg.h"
#include "kiln/ops/cpu/conv_algo.h"
#include "kiln/ops/cpu/gemm.h"
#include "kiln/ops/cpu/winograd.h"
#include "kiln/ops/nn_ops.h"
#include "kiln/ops/reduce.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::graph {

namespace {

std::array<int64_t, 2> pair_attr(const Node& node, const std::string& key, int64_t fallback) {
  std::vector<int64_t> v = node.attr_ints(key, {fallback, fallback});
  if (v.size() != 2) kernel_error(node, detail::concat(key, " must have 2 entries for a 2-d op, got ", v.size()));
  return {v[0], v[1]};
}

// ONNX pads (h_begin, w_begin, h_end, w_end) -> symmetric padding, or an explicit pad first.
struct Padding {
  std::array<int64_t, 2> symmetric{0, 0};
  std::vector<int64_t> explicit_pads;  // torch layout for ops::pad, empty when symmetric
};
Padding split_pads(const Node& node) {
  std::vector<int64_t> p = node.attr_ints("pads", {0, 0, 0, 0});
  if (p.size() != 4) kernel_error(node, detail::concat("pads must have 4 entries, got ", p.size()));
  for (int64_t v : p)
    if (v < 0) kernel_error(node, "negative pads");
  Padding out;
  if (p[0] == p[2] && p[1] == p[3])
    out.symmetric = {p[0], p[1]};
  else
    out.explicit_pads = {p[1], p[3], p[0], p[2]};
  return out;
}

std::vector<Tensor> matmul_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {ops::matmul(required_input(node, in, 0, "a"), required_input(node, in, 1, "b"))};
}

// The residual input of a fused linear (fuse_patterns.cpp), added to the product.
Tensor with_residual(const Tensor& y, const std::vector<Tensor>& in) {
  const Tensor r = optional_input(in, 3);
  return r.defined() ? ops::add(y, r) : y;
}

std::vector<Tensor> linear_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {with_residual(
      ops::linear(required_input(node, in, 0, "x"), required_input(node, in, 1, "w"), optional_input(in, 2)), in)};
}

ops::LinearActivation activation_attr(const Node& node) {
  std::string a = node.attr_string("activation", "none");
  if (a == "none") return ops::LinearActivation::none;
  if (a == "relu") return ops::LinearActivation::relu;
  if (a == "gelu") return ops::LinearActivation::gelu;
  if (a == "gelu_tanh") return ops::LinearActivation::gelu_tanh;
  kernel_error(node, detail::concat("unknown activation \"", a, "\""));
}

std::vector<Tensor> linear_act_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {with_residual(ops::linear_act(required_input(node, in, 0, "x"), required_input(node, in, 1, "w"),
                                        optional_input(in, 2), activation_attr(node)),
                        in)};
}

// Compiled graphs: a constant f32 weight is packed into the GEMM's panels once (PackedB), so a
// run skips the per-call packing (about 9% of a batch-1 gpt_char forward). Same bits as the plain
// kernel: the packed product sums in the same order.
struct PackedLinearWeight {
  Tensor weight;  // (out, in), contiguous: the packing's source, kept alive
  ops::cpu::PackedB packed;
};

PreparedState prepare_linear(const Node& node) {
  const Value* w = node.input(1);
  if (!w || !w->is_constant() || w->constant.dtype() != DType::f32 || w->constant.dim() != 2) return nullptr;
  auto st = std::make_shared<PackedLinearWeight>();
  st->weight = contiguous_raw(w->constant);
  const int64_t N = st->weight.shape()[0], K = st->weight.shape()[1];
  if (N == 0 || K == 0) return nullptr;
  // B(k, j) = W[j, k]: the weight read as its transpose, as ops::linear does.
  st->packed = ops::cpu::pack_b_once(K, N, ops::cpu::MatrixView{st->weight.data<float>(), 0, 1, K});
  return st;
}

std::vector<Tensor> run_prepacked_linear(const Node& node, const std::vector<Tensor>& in, const void* state) {
  const auto& st = *static_cast<const PackedLinearWeight*>(state);
  const Tensor& x = required_input(node, in, 0, "x");
  const Tensor bias = optional_input(in, 2);
  const Tensor residual = optional_input(in, 3);
  const int64_t N = st.packed.N, K = st.packed.K;
  const bool act = node.op_name() == "linear_act";
  Shape out_shape = x.shape();
  if (!out_shape.empty()) out_shape.back() = N;
  // Anything unusual (another dtype, a mismatched shape: its error message) takes the plain path.
  if (x.dtype() != DType::f32 || x.dim() < 1 || x.shape().back() != K ||
      (bias.defined() && (bias.dtype() != DType::f32 || bias.dim() != 1 || bias.shape()[0] != N)) ||
      (residual.defined() && (residual.dtype() != DType::f32 || residual.shape() != out_shape)))
    return act ? linear_act_kernel(node, in) : linear_kernel(node, in);
  const Tensor xc = contiguous_raw(x);
  const Tensor bc = bias.defined() ? contiguous_raw(bias) : Tensor();
  const Tensor rc = residual.defined() ? contiguous_raw(residual) : Tensor();
  Tensor out = Tensor::empty(out_shape, DType::f32);
  ops::cpu::GemmEpilogue ep;
  ep.bias = bc.defined() ? bc.data<float>() : nullptr;
  ep.residual = rc.defined() ? rc.data<float>() : nullptr;
  const ops::LinearActivation a = act ? activation_attr(node) : ops::LinearActivation::none;
  ep.act = a == ops::LinearActivation::relu        ? ops::cpu::GemmActivation::relu
           : a == ops::LinearActivation::gelu      ? ops::cpu::GemmActivation::gelu
           : a == ops::LinearActivation::gelu_tanh ? ops::cpu::GemmActivation::gelu_tanh
                                                   : ops::cpu::GemmActivation::none;
  const int64_t M = K > 0 ? xc.numel() / K : 0;
  ops::cpu::sgemm_prepacked(M, ops::cpu::MatrixView{xc.data<float>(), 0, K, 1}, st.packed,
                            ops::cpu::OutputView{out.data<float>(), 0, N}, ep);
  return {out};
}

template <bool kMax>
Tensor pool(const Node& node, const Tensor& x, const std::string& prefix);

// The fused pool is 2x2 with stride 2 and no padding, and floor and ceil mode agree or floor is asked.
bool is_plain_pool2(const Node& node, const Tensor& x, const Tensor& w, const ops::Conv2dOptions& o) {
  if (x.dim() != 4 || w.dim() != 4 || node.attr_string("pool", "") != "max") return false;
  if (pair_attr(node, "pool_kernel_shape", 1) != std::array<int64_t, 2>{2, 2} ||
      pair_attr(node, "pool_strides", 1) != std::array<int64_t, 2>{2, 2})
    return false;
  for (int64_t p : node.attr_ints("pool_pads", {0, 0, 0, 0}))
    if (p != 0) return false;
  if (node.attr_int("pool_ceil_mode", 0) == 0) return true;
  for (int i = 0; i < 2; ++i) {  // ceil mode: the conv output size must be even
    const int64_t len = x.shape()[2 + i] + 2 * o.padding[i] - o.dilation[i] * (w.shape()[2 + i] - 1) - 1;
    if (len / o.stride[i] % 2 == 0) return false;  // len/stride + 1 outputs: odd
  }
  return true;
}

std::vector<Tensor> conv2d_kernel(const Node& node, const std::vector<Tensor>& in) {
  Tensor x = required_input(node, in, 0, "x");
  ops::Conv2dOptions o;
  o.stride = pair_attr(node, "strides", 1);
  o.dilation = pair_attr(node, "dilations", 1);
  o.groups = node.attr_int("group", 1);
  Padding p = split_pads(node);
  if (!p.explicit_pads.empty()) x = ops::pad(x, p.explicit_pads);
  o.padding = p.symmetric;
  ops::LinearActivation act = activation_attr(node);
  if (act != ops::LinearActivation::none && act != ops::LinearActivation::relu)
    kernel_error(node, "conv2d fuses only relu");
  o.relu = act == ops::LinearActivation::relu;  // in the kernel's last pass over the output
  const Tensor& w = required_input(node, in, 1, "w");
  Tensor b = optional_input(in, 2);
  if (!node.has_attr("pool")) return {ops::conv2d(x, w, b, o)};
  // A max pool fused into the convolution (fuse_patterns). The common 2x2 / stride-2 one is pooled
  // inside the convolution's last pass (Conv2dOptions::max_pool2); any other runs over chunks of
  // the batch whose convolution output stays small (about 1 MiB, cache-resident) and is pooled at
  // once. Either way the full-size convolution output never exists.
  if (is_plain_pool2(node, x, w, o)) {
    o.max_pool2 = true;
    return {ops::conv2d(x, w, b, o)};
  }
  const int64_t N = x.shape()[0];
  const int64_t per_image = std::max<int64_t>(1, w.shape()[0] * x.shape()[2] * x.shape()[3] * 4);
  const int64_t chunk = std::clamp<int64_t>((int64_t{1} << 20) / per_image, 1, std::max<int64_t>(N, 1));
  if (chunk >= N) return {pool<true>(node, ops::conv2d(x, w, b, o), "pool_")};
  std::vector<Tensor> parts;
  for (int64_t n0 = 0; n0 < N; n0 += chunk)
    parts.push_back(pool<true>(node, ops::conv2d(ops::slice(x, 0, n0, std::min(N, n0 + chunk)), w, b, o), "pool_"));
  return {ops::cat(parts, 0)};
}

// A conv2d whose constant 3x3 stride-1 f32 weight the Winograd algorithm would take: its
// transform G w G^T (and, for the channel-lane layout of small batches, each position's packed
// GEMM operand) computed once, for the F(m, 3) the heuristic picks for the node's input size.
// At run time, when the choice is that Winograd, the kernel runs it on the prepared weights
// (bitwise the plain kernel: same transform, same GEMM order); anything else takes the plain path.
struct PreparedConv {
  Tensor weight;  // (O, C, 3, 3) contiguous
  std::shared_ptr<const ops::cpu::WinogradWeights> wino;
};

PreparedState prepare_conv2d(const Node& node) {
  const Value* x = node.input(0);
  const Value* w = node.input(1);
  if (!x || !w || !w->is_constant() || w->constant.dtype() != DType::f32 || w->constant.dim() != 4) return nullptr;
  const Shape& ws = w->constant.shape();
  if (ws[2] != 3 || ws[3] != 3 || ws[0] == 0 || ws[1] == 0 || node.attr_int("group", 1) != 1) return nullptr;
  if (pair_attr(node, "strides", 1) != std::array<int64_t, 2>{1, 1} ||
      pair_attr(node, "dilations", 1) != std::array<int64_t, 2>{1, 1})
    return nullptr;
  const std::vector<int64_t> pads = node.attr_ints("pads", {0, 0, 0, 0});
  if (!x->shape || x->shape->size() != 4 || !(*x->shape)[2].is_fixed() || !(*x->shape)[3].is_fixed() ||
      pads.size() != 4 || pads[0] != pads[2] || pads[1] != pads[3])
    return nullptr;
  ops::cpu::ConvShape s;
  s.C = ws[1], s.O = ws[0], s.KH = s.KW = 3, s.ph = pads[0], s.pw = pads[1];
  s.H = (*x->shape)[2].size, s.W = (*x->shape)[3].size;
  if (s.OH() < 1 || s.OW() < 1) return nullptr;
  auto st = std::make_shared<PreparedConv>();
  st->weight = contiguous_raw(w->constant);
  st->wino = ops::cpu::winograd_weights(std::min(s.OH(), s.OW()) >= 6 ? 4 : 2, s, st->weight.data<float>());
  return st;
}

std::vector<Tensor> run_prepared_conv2d(const Node& node, const std::vector<Tensor>& in, const void* state) {
  const auto& st = *static_cast<const PreparedConv*>(state);
  const Tensor& x = required_input(node, in, 0, "x");
  const Tensor b = optional_input(in, 2);
  const std::string act = node.attr_string("activation", "none");
  const std::vector<int64_t> pads = node.attr_ints("pads", {0, 0, 0, 0});
  const int64_t O = st.wino->O;
  if (x.dtype() != DType::f32 || x.dim() != 4 || x.shape()[1] != st.wino->C || pads.size() != 4 ||
      (act != "none" && act != "relu") || (b.defined() && (b.dtype() != DType::f32 || b.shape() != Shape{O})))
    return conv2d_kernel(node, in);
  ops::cpu::ConvShape s;
  s.N = x.shape()[0], s.C = x.shape()[1], s.H = x.shape()[2], s.W = x.shape()[3], s.O = O, s.KH = s.KW = 3;
  s.ph = pads[0], s.pw = pads[1], s.bias = b.defined();
  ops::Conv2dOptions o;
  o.padding = {s.ph, s.pw};
  const bool pool = node.has_attr("pool");
  if (s.N == 0 || s.OH() < 2 || s.OW() < 2 || (pool && !is_plain_pool2(node, x, st.weight, o)))
    return conv2d_kernel(node, in);
  // The prepared transform changes the trade-off for small batches: eager pays the transform
  // and packing of U on every call, which makes im2col its faster choice at batch 1 (cnn: 0.129
  // vs 0.137 ms), while with both done once, channel-lane Winograd halves that forward. So
  // channel-lane shapes run Winograd unless KILN_CONV_ALGO forces something else; the rest follow
  // the usual choice (tuning cache, heuristic).
  const ops::cpu::ConvAlgo want = st.wino->m == 4 ? ops::cpu::ConvAlgo::winograd4 : ops::cpu::ConvAlgo::winograd2;
  const std::optional<ops::cpu::ConvAlgo> forced = ops::cpu::conv_algo_forced();
  bool winograd = ops::cpu::winograd_channel_lanes(s);
  if (forced && ops::cpu::conv_algo_applicable(*forced, s))
    winograd = *forced == want;
  else if (!winograd)
    winograd = ops::cpu::conv_algo_resolve(ops::cpu::ConvAlgo::automatic, s, ops::cpu::ConvPass::forward) == want;
  if (!winograd) return conv2d_kernel(node, in);
  const Tensor xc = contiguous_raw(x), bc = b.defined() ? contiguous_raw(b) : Tensor();
  const int64_t f = pool ? 2 : 1;
  Tensor out = Tensor::empty({s.N, O, s.OH() / f, s.OW() / f}, DType::f32);
  const float* bp = bc.defined() ? bc.data<float>() : nullptr;
  const auto& k = *ops::cpu::winograd_kernels();
  if (pool)
    ops::cpu::winograd_forward_pool2(st.wino->m, s, xc.data<float>(), st.weight.data<float>(), bp, act == "relu",
                                     out.data<float>(), k, st.wino.get());
  else
    ops::cpu::winograd_forward(st.wino->m, s, xc.data<float>(), st.weight.data<float>(), bp, act == "relu",
                               out.data<float>(), nullptr, k, st.wino.get());
  return {out};
}

// Extra end padding that makes a pooled size round up (ceil_mode), per spatial dim.
std::array<int64_t, 2> ceil_extra(const Tensor& x, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                                  const std::vector<int64_t>& pads) {
  std::array<int64_t, 2> extra{0, 0};
  for (int i = 0; i < 2; ++i) {
    int64_t len = x.shape()[2 + i] + pads[i] + pads[i + 2];
    int64_t floor_out = (len - k[i]) / s[i] + 1;
    int64_t ceil_out = (len - k[i] + s[i] - 1) / s[i] + 1;
    // The last window must start inside the input or its begin padding (as ONNX and PyTorch).
    if (ceil_out > floor_out && (ceil_out - 1) * s[i] >= x.shape()[2 + i] + pads[i]) --ceil_out;
    extra[i] = (ceil_out - 1) * s[i] + k[i] - len;
    extra[i] = std::max<int64_t>(extra[i], 0);
  }
  return extra;
}

// Pooling of x with the node's attributes named `prefix`kernel_shape, ... (prefix "pool_" when
// the pooling was fused into a conv2d node).
template <bool kMax>
Tensor pool(const Node& node, const Tensor& x, const std::string& prefix) {
  if (x.dim() != 4) kernel_error(node, detail::concat("expects (N, C, H, W), got ", shape_str(x.shape())));
  if (kMax && !is_floating(x.dtype()))  // integer max pooling: exact through f64
    return ops::to(pool<true>(node, ops::to(x, DType::f64), prefix), x.dtype());
  std::array<int64_t, 2> k = pair_attr(node, prefix + "kernel_shape", 1);
  std::array<int64_t, 2> s = pair_attr(node, prefix + "strides", 1);
  if (node.has_attr(prefix + "dilations") && node.attr_ints(prefix + "dilations") != std::vector<int64_t>{1, 1})
    kernel_error(node, "dilated pooling is not supported");
  std::vector<int64_t> pads = node.attr_ints(prefix + "pads", {0, 0, 0, 0});
  if (pads.size() != 4) kernel_error(node, "pads must have 4 entries");
  std::array<int64_t, 2> extra{0, 0};
  if (node.attr_int(prefix + "ceil_mode", 0)) extra = ceil_extra(x, k, s, pads);
  // Kiln's pooling pads symmetrically by at most half the window; anything else pads explicitly.
  bool symmetric = pads[0] == pads[2] && pads[1] == pads[3] && extra == std::array<int64_t, 2>{0, 0} &&
                   2 * pads[0] <= k[0] && 2 * pads[1] <= k[1];
  bool count_pad = node.attr_int(prefix + "count_include_pad", 0) != 0;
  std::vector<int64_t> torch_pads = {pads[1], pads[3] + extra[1], pads[0], pads[2] + extra[0]};
  if constexpr (kMax) {
    if (symmetric) return ops::max_pool2d(x, k, s, {pads[0], pads[1]});
    return ops::max_pool2d(ops::pad(x, torch_pads, -std::numeric_limits<double>::infinity()), k, s);
  } else {
    bool no_pad = pads == std::vector<int64_t>{0, 0, 0, 0} && extra == std::array<int64_t, 2>{0, 0};
    if (no_pad) return ops::avg_pool2d(x, k, s);
    if (count_pad && symmetric) return ops::avg_pool2d(x, k, s, {pads[0], pads[1]});
    // Sum over the window divided by the number of counted cells: pool x and a mask of ones
    // padded the same way, both with the padding in the divisor, and divide.
    Tensor xp = ops::pad(x, torch_pads);
    Tensor ones = Tensor::ones({1, 1, x.shape()[2], x.shape()[3]}, x.dtype());
    std::vector<int64_t> mask_pads = torch_pads;
    if (count_pad) {  // explicit pads count, ceil-mode overhang does not
      ones = ops::pad(ones, {pads[1], pads[3], pads[0], pads[2]}, 1.0);
      mask_pads = {0, extra[1], 0, extra[0]};
    }
    Tensor mask = ops::pad(ones, mask_pads);
    return ops::div(ops::avg_pool2d(xp, k, s), ops::avg_pool2d(mask, k, s));
  }
}

template <bool kMax>
std::vector<Tensor> pool_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {pool<kMax>(node, required_input(node, in, 0, "x"), "")};
}

std::vector<Tensor> adaptive_avg_pool_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {ops::adaptive_avg_pool2d(required_input(node, in, 0, "x"), pair_attr(node, "output_size", 1))};
}

// ONNX BatchNormalization with training_mode=1 (opset 14+): normalise with the batch's mean and
// population variance over every dim but the channel, and return the updated running statistics
// (input * momentum + batch * (1 - momentum)) as outputs 1 and 2.
std::vector<Tensor> batch_norm_training(const Node& node, const Tensor& x, const std::vector<Tensor>& in, double eps) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  Shape per_channel(static_cast<size_t>(x.dim()), 1);
  per_channel[1] = x.shape()[1];
  auto channel = [&](const Tensor& t) { return ops::reshape(t, per_channel); };
  Tensor mean = ops::mean(x, dims, /*keepdim=*/true);
  Tensor centred = ops::sub(x, mean);
  Tensor var = ops::mean(ops::mul(centred, centred), dims, /*keepdim=*/true);
  Tensor y = ops::add(ops::mul(ops::div(centred, ops::sqrt(ops::add(var, eps))),
                               channel(required_input(node, in, 1, "scale"))),
                      channel(required_input(node, in, 2, "bias")));
  double momentum = node.attr_float("momentum", 0.9);
  auto update = [&](const Tensor& running, const Tensor& batch) {
    return ops::add(ops::mul(running, momentum), ops::mul(ops::reshape(batch, running.shape()), 1.0 - momentum));
  };
  return {y, update(required_input(node, in, 3, "mean"), mean), update(required_input(node, in, 4, "var"), var)};
}

std::vector<Tensor> batch_norm_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "x");
  if (x.dim() < 2) kernel_error(node, "expects (N, C, ...)");
  double eps = node.attr_float("epsilon", 1e-5);
  if (node.attr_int("training_mode", 0) != 0) return batch_norm_training(node, x, in, eps);
  Tensor xin = x.dim() == 2 || x.dim() == 4 ? x : ops::reshape(x, {x.shape()[0], x.shape()[1], -1, 1});
  Tensor y = ops::batch_norm(xin, required_input(node, in, 1, "scale"), required_input(node, in, 2, "bias"),
                             required_input(node, in, 3, "mean"), required_input(node, in, 4, "var"),
                             /*training=*/false, 0.0, eps);
  return {x.dim() == 2 || x.dim() == 4 ? y : ops::reshape(y, x.shape())};
}

std::vector<Tensor> layer_norm_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "x");
  int64_t axis = normalize_axis(node.attr_int("axis", -1), x.dim(), node);
  Shape normalized(x.shape().begin() + axis, x.shape().end());
  Tensor w = optional_input(in, 1), b = optional_input(in, 2);
  // ONNX scale/bias broadcast to the normalised shape; Kiln wants them shaped exactly so.
  if (w.defined() && w.shape() != normalized) w = ops::contiguous(ops::expand(w, normalized));
  if (b.defined() && b.shape() != normalized) b = ops::contiguous(ops::expand(b, normalized));
  double eps = node.attr_float("epsilon", 1e-5);
  std::vector<Tensor> out{ops::layer_norm(x, normalized, w, b, eps)};
  if (node.outputs.size() > 1) {  // ONNX's optional Mean and InvStdDev, computed in f32 (stash_type 1)
    std::vector<int64_t> dims;
    for (int64_t d = axis; d < x.dim(); ++d) dims.push_back(d);
    Tensor xf = x.dtype() == DType::f64 ? x : ops::to(x, DType::f32);
    Tensor mean = ops::mean(xf, dims, /*keepdim=*/true);
    Tensor centred = ops::sub(xf, mean);
    Tensor var = ops::mean(ops::mul(centred, centred), dims, /*keepdim=*/true);
    out.push_back(mean);
    out.push_back(ops::rsqrt(ops::add(var, eps)));
  }
  return out;
}

std::vector<Tensor> softmax_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "x");
  return {ops::softmax(x, normalize_axis(node.attr_int("axis", -1), x.dim(), node))};
}

std::vector<Tensor> log_softmax_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "x");
  return {ops::log_softmax(x, normalize_axis(node.attr_int("axis", -1), x.dim(), node))};
}

std::vector<Tensor> embedding_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {ops::embedding(required_input(node, in, 0, "weight"), required_input(node, in, 1, "indices"))};
}

std::vector<Tensor> attention_kernel(const Node& node, const std::vector<Tensor>& in) {
  return {ops::scaled_dot_product_attention(required_input(node, in, 0, "q"), required_input(node, in, 1, "k"),
                                            required_input(node, in, 2, "v"), node.attr_int("causal", 0) != 0)};
}

std::vector<Tensor> dropout_kernel(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "x");
  const Tensor ratio_t = optional_input(in, 1), training_t = optional_input(in, 2);
  const double ratio = ratio_t.defined() ? scalar_value(ratio_t, node, "ratio") : 0.5;
  const bool training = training_t.defined() && scalar_value(training_t, node, "training_mode") != 0.0;
  const bool with_mask = node.outputs.size() > 1;
  if (!training || ratio == 0.0) {
    if (with_mask) return {x, Tensor::ones(x.shape(), DType::b8)};  // the mask: all kept
    return {x};
  }
  if (!(ratio > 0.0 && ratio < 1.0)) kernel_error(node, detail::concat("ratio ", ratio, " is not in [0, 1)"));
  if (!is_floating(x.dtype())) kernel_error(node, "training-mode dropout needs a floating-point input");
  const uint32_t seed = node.has_attr("seed") ? static_cast<uint32_t>(node.attr_int("seed")) : fresh_seed();
  std::mt19937 gen(seed);
  Tensor mask = Tensor::empty(x.shape(), DType::b8);
  Tensor keep = Tensor::empty(x.shape(), x.dtype());
  const double scale = 1.0 / (1.0 - ratio);
  auto* m = mask.data<bool>();
  dispatch_float(x.dtype(), "dropout", [&]<typename T>() {
    T* k = keep.data<T>();
    for (int64_t i = 0; i < x.numel(); ++i) {  // one stream, in element order: sequential by nature
      m[i] = numpy_uniform(gen) >= ratio;
      k[i] = m[i] ? static_cast<T>(scale) : T(0);
    }
  });
  if (with_mask) return {ops::mul(x, keep), mask};
  return {ops::mul(x, keep)};
}

}  // namespace

void register_nn_kernels(KernelTable& t) {
  t.add("matmul", matmul_kernel);
  t.add("linear", linear_kernel);
  t.add("linear_act", linear_act_kernel);
  t.add_prepared("linear", {prepare_linear, run_prepacked_linear});
  t.add_prepared("linear_act", {prepare_linear, run_prepacked_linear});
  t.add("conv2d", conv2d_kernel);
  t.add_prepared("conv2d", {prepare_conv2d, run_prepared_conv2d});
  t.add("max_pool2d", pool_kernel<true>);
  t.add("avg_pool2d", pool_kernel<false>);
  t.add("adaptive_avg_pool2d", adaptive_avg_pool_kernel);
  t.add("batch_norm", batch_norm_kernel);
  t.add("layer_norm", layer_norm_kernel);
  t.add("softmax", softmax_kernel);
  t.add("log_softmax", log_softmax_kernel);
  t.add("embedding", embedding_kernel);
  t.add("scaled_dot_product_attention", attention_kernel);
  t.add("dropout", dropout_kernel);
}

}  // namespace kiln::graph
