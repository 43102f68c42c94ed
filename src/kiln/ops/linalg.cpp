// matmul and linear: shape rules, batch broadcasting, and their backward passes, on top of the
// strided batched GEMM in cpu/gemm.h.
#include "kiln/ops/linalg.h"

#include "kiln/core/grad_mode.h"
#include "kiln/ops/autograd_record.h"
#include "kiln/ops/cpu/gemm.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/reduce.h"
#include "kiln/ops/shape_ops.h"
#include "kiln/ops/trace.h"

namespace kiln::ops {

namespace {

// A (batch..., rows, cols) operand expanded to the broadcast batch shape, described as one
// batch stride. Batch dims that cannot collapse to a single stride are copied to contiguous.
cpu::MatrixView matrix_view(const Tensor& t, const Shape& batch_shape, Tensor& keep_alive) {
  int64_t nd = t.dim();
  Shape full = batch_shape;
  full.push_back(t.shape()[nd - 2]);
  full.push_back(t.shape()[nd - 1]);
  Tensor e = t;
  // A matrix needs unit stride in one of its two dims for oneDNN; otherwise copy.
  if (t.strides()[nd - 1] != 1 && t.strides()[nd - 2] != 1) e = contiguous_raw(t);
  if (numel(Shape(e.shape().begin(), e.shape().end() - 2)) <= 1) {
    keep_alive = e;
    return {e.raw_data(), 0, e.strides()[nd - 2], e.strides()[nd - 1]};
  }
  // Strides of e's batch dims, broadcast to batch_shape.
  size_t lead = batch_shape.size() - static_cast<size_t>(nd - 2);
  Strides bs(batch_shape.size(), 0);
  for (size_t i = 0; i + 2 < static_cast<size_t>(nd); ++i) bs[lead + i] = e.shape()[i] == 1 ? 0 : e.strides()[i];
  // Collapsible when each batch dim's stride equals the next one's stride times its size.
  bool ok = true;
  for (size_t i = 0; i + 1 < bs.size(); ++i)
    if (batch_shape[i] != 1 && bs[i] != bs[i + 1] * batch_shape[i + 1]) ok = false;
  int64_t inner = bs.empty() ? 0 : bs.back();
  if (!ok || inner == 0) {
    Strides st = bs;
    st.push_back(e.strides()[nd - 2]);
    st.push_back(e.strides()[nd - 1]);
    e = contiguous_raw(e.as_strided(full, st, e.offset()));
    keep_alive = e;
    int64_t r = full[full.size() - 2], c = full[full.size() - 1];
    return {e.raw_data(), r * c, c, 1};
  }
  keep_alive = e;
  return {e.raw_data(), inner, e.strides()[nd - 2], e.strides()[nd - 1]};
}

// a (..., M, K) @ b (..., K, N), both at least 2-d, same float dtype, then + bias and the
// activation (f32: fused into the GEMM; f64: applied after, as the reference).
Tensor matmul_nd(const Tensor& a, const Tensor& b, const Tensor& bias,
                 LinearActivation act = LinearActivation::none) {
  int64_t M = a.shape()[a.dim() - 2], K = a.shape()[a.dim() - 1];
  int64_t K2 = b.shape()[b.dim() - 2], N = b.shape()[b.dim() - 1];
  KILN_CHECK(K == K2, "matmul: inner dimensions differ: ", shape_str(a.shape()), " @ ", shape_str(b.shape()));
  Shape batch = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2),
                                 Shape(b.shape().begin(), b.shape().end() - 2), "matmul (batch dims)");
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = Tensor::empty(out_shape, a.dtype());
  Tensor ka, kb;
  cpu::MatrixView va = matrix_view(a, batch, ka), vb = matrix_view(b, batch, kb);
  int64_t nb = numel(batch);
  Tensor biasc = bias.defined() ? contiguous_raw(bias) : Tensor();
  if (a.dtype() == DType::f32) {
    cpu::GemmEpilogue ep;
    ep.bias = bias.defined() ? biasc.data<float>() : nullptr;
    ep.act = act == LinearActivation::relu   ? cpu::GemmActivation::relu
             : act == LinearActivation::gelu ? cpu::GemmActivation::gelu
             : act == LinearActivation::gelu_tanh ? cpu::GemmActivation::gelu_tanh
                                                  : cpu::GemmActivation::none;
    cpu::sgemm(nb, M, N, K, va, vb, cpu::OutputView{out.data<float>(), M * N, N}, ep);
    return out;
  }
  cpu::gemm<double>(nb, M, N, K, va, vb, out.data<double>(), bias.defined() ? biasc.data<double>() : nullptr);
  if (act == LinearActivation::none) return out;
  NoGradGuard no_grad;
  if (act == LinearActivation::relu) return relu(out);
  return gelu(out, act == LinearActivation::gelu ? GeluApprox::none : GeluApprox::tanh);
}

void check_float_pair(const char* op, const Tensor& a, const Tensor& b) {
  KILN_CHECK_TYPE(a.dtype() == b.dtype() && (a.dtype() == DType::f32 || a.dtype() == DType::f64), op,
                  ": expected two f32 or two f64 tensors, got ", dtype_name(a.dtype()), " and ",
                  dtype_name(b.dtype()));
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  TracedOp trace_;
  check_float_pair("matmul", a, b);
  KILN_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both operands need at least 1 dim, got ", shape_str(a.shape()),
             " @ ", shape_str(b.shape()));
  if (a.dim() == 1 && b.dim() == 1)
    return traced(trace_, "matmul", {a, b}, reshape(matmul(unsqueeze(a, 0), unsqueeze(b, 1)), {}),
                             {});  // dot product
  if (a.dim() == 1) return traced(trace_, "matmul", {a, b}, squeeze(matmul(unsqueeze(a, 0), b), -2), {});
  if (b.dim() == 1) return traced(trace_, "matmul", {a, b}, squeeze(matmul(a, unsqueeze(b, 1)), -1), {});
  Tensor out = matmul_nd(a, b, Tensor());
  if (!any_requires_grad({a, b})) return traced(trace_, "matmul", {a, b}, out, {});
  return traced(trace_, "matmul", {a, b},
                           record("matmul", {a, b}, out,
                                  [a_ = SavedTensor(a, "matmul"), b_ = SavedTensor(b, "matmul")](
                                      const Tensor& g, const std::vector<bool>& need) {
                                    const Tensor& a = a_.get();
                                    const Tensor& b = b_.get();
                                    Tensor ga, gb;
                                    if (need[0]) ga = reduce_to_shape(matmul(g, transpose(b, -1, -2)), a.shape());
                                    if (need[1]) gb = reduce_to_shape(matmul(transpose(a, -1, -2), g), b.shape());
                                    return std::vector<Tensor>{ga, gb};
                                  }),
                           {});
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  TracedOp trace_;
  return traced(trace_, "linear", {x, w, b}, linear_act(x, w, b, LinearActivation::none), {});
}

Tensor linear_act(const Tensor& x, const Tensor& w, const Tensor& b, LinearActivation act) {
  TracedOp trace_;
  check_float_pair("linear", x, w);
  KILN_CHECK(w.dim() == 2, "linear: weight must be 2-d (out, in), got ", shape_str(w.shape()));
  KILN_CHECK(x.dim() >= 1 && x.shape().back() == w.shape()[1], "linear: input ", shape_str(x.shape()),
             " does not match weight ", shape_str(w.shape()), " (expected last dim ", w.shape()[1], ")");
  if (b.defined()) {
    KILN_CHECK(b.dim() == 1 && b.shape()[0] == w.shape()[0], "linear: bias ", shape_str(b.shape()),
               " does not match weight ", shape_str(w.shape()));
    KILN_CHECK_TYPE(b.dtype() == w.dtype(), "linear: bias dtype ", dtype_name(b.dtype()), " differs from weight ",
                    dtype_name(w.dtype()));
  }
  std::vector<Tensor> inputs{x, w};
  if (b.defined()) inputs.push_back(b);
  const bool grad = any_requires_grad(inputs);
  if (grad && (act == LinearActivation::gelu || act == LinearActivation::gelu_tanh))
    return traced(trace_, "linear_act", {x, w, b},
                             gelu(linear(x, w, b), act == LinearActivation::gelu ? GeluApprox::none : GeluApprox::tanh),
                             {{"activation", std::string(act == LinearActivation::relu        ? "relu"
                                                         : act == LinearActivation::gelu      ? "gelu"
                                                         : act == LinearActivation::gelu_tanh ? "gelu_tanh"
                                                                                              : "none")}});
  // Fold leading dims into rows: one GEMM with the bias (and activation) fused.
  Shape out_shape = x.shape();
  out_shape.back() = w.shape()[0];
  Tensor x2c = contiguous_raw(x);
  Tensor x2 = x2c.as_strided({x.numel() / w.shape()[1], w.shape()[1]}, {w.shape()[1], 1}, x2c.offset());
  Tensor wt = w.as_strided({w.shape()[1], w.shape()[0]}, {w.strides()[1], w.strides()[0]}, w.offset());
  Tensor out = matmul_nd(x2, wt, b, act);
  out = out.as_strided(out_shape, contiguous_strides(out_shape), 0);
  if (!grad)
    return traced(trace_, "linear_act", {x, w, b}, out,
                             {{"activation", std::string(act == LinearActivation::relu        ? "relu"
                                                         : act == LinearActivation::gelu      ? "gelu"
                                                         : act == LinearActivation::gelu_tanh ? "gelu_tanh"
                                                                                              : "none")}});
  const bool relu_fused = act == LinearActivation::relu;
  // The ReLU mask comes from the output, saved without a copy (an in-place edit of it later is
  // caught by its version counter).
  return traced(trace_, "linear_act", {x, w, b},
                           record(relu_fused ? "linear_relu" : "linear", inputs, out,
                                  [x_ = SavedTensor(x2c, "linear"), w_ = SavedTensor(w, "linear"),
                                   y_ = relu_fused ? SavedTensor(out, "linear_relu") : SavedTensor(), relu_fused,
                                   in_shape = x.shape()](const Tensor& g, const std::vector<bool>& need) {
                                    const Tensor& x = x_.get();
                                    const Tensor& w = w_.get();
                                    int64_t out_f = w.shape()[0], in_f = w.shape()[1];
                                    Tensor g2 = reshape(
                                        relu_fused ? relu_backward_from_output(contiguous(g), y_.get()) : contiguous(g),
                                        {-1, out_f});
                                    std::vector<Tensor> grads(need.size());
                                    if (need[0]) grads[0] = reshape(matmul(g2, w), in_shape);
                                    if (need[1]) grads[1] = matmul(transpose(g2, 0, 1), reshape(x, {-1, in_f}));
                                    if (need.size() > 2 && need[2]) grads[2] = sum(g2, {0});
                                    return grads;
                                  }),
                           {{"activation", std::string(act == LinearActivation::relu        ? "relu"
                                                       : act == LinearActivation::gelu      ? "gelu"
                                                       : act == LinearActivation::gelu_tanh ? "gelu_tanh"
                                                                                            : "none")}});
}

}  // namespace kiln::ops
