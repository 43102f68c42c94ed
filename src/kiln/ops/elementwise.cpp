// Elementwise operators: forward kernels dispatch by dtype (f32 to the per-ISA kernels), and each
// op's backward is written right after its forward.
#include "kiln/ops/elementwise.h"

#include <cmath>

#include "kiln/ops/autograd_record.h"
#include "kiln/ops/cpu/elementwise_loops.h"
#include "kiln/ops/cpu/float_kernels.h"
#include "kiln/ops/reduce.h"
#include "kiln/ops/trace.h"

namespace kiln::ops {

using cpu::BinaryOp;
using cpu::UnaryBackwardOp;
using cpu::UnaryOp;

namespace cpu {
Strides broadcast_strides(const Tensor& t, const Shape& shape) {
  Strides s(shape.size(), 0);
  size_t lead = shape.size() - t.shape().size();
  for (size_t i = 0; i < t.shape().size(); ++i)
    s[lead + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  return s;
}
}  // namespace cpu

namespace {

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
    case BinaryOp::pow: return "pow";
    case BinaryOp::maximum: return "maximum";
    case BinaryOp::minimum: return "minimum";
  }
  return "?";
}

template <typename T>
T apply_binary(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::add: return static_cast<T>(x + y);
    case BinaryOp::sub: return static_cast<T>(x - y);
    case BinaryOp::mul: return static_cast<T>(x * y);
    case BinaryOp::div: return static_cast<T>(x / y);
    case BinaryOp::pow: return static_cast<T>(std::pow(static_cast<double>(x), static_cast<double>(y)));
    case BinaryOp::maximum:
      if constexpr (std::is_floating_point_v<T>) if (std::isnan(x) || std::isnan(y)) return x + y;
      return x > y ? x : y;
    case BinaryOp::minimum:
      if constexpr (std::is_floating_point_v<T>) if (std::isnan(x) || std::isnan(y)) return x + y;
      return x < y ? x : y;
  }
  return x;
}

// The forward of every binary arithmetic op: promote, broadcast, run.
Tensor binary_forward(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  DType dt = promote_types(a.dtype(), b.dtype());
  KILN_CHECK_TYPE(dt != DType::b8, name, ": not defined for bool tensors");
  // Division and pow of integers produce floats, as in PyTorch's true division.
  if ((op == BinaryOp::div || op == BinaryOp::pow) && !is_floating(dt)) dt = DType::f32;
  if (dt == DType::f16 || dt == DType::bf16) dt = DType::f32;
  Tensor ac = to_dtype_raw(a, dt), bc = to_dtype_raw(b, dt);
  Tensor out = Tensor::empty(broadcast_shapes(a.shape(), b.shape(), name), dt);
  if (out.numel() == 0) return out;
  if (dt == DType::f32) {
    const auto& k = cpu::float_kernels();
    StridedLayout<3> layout(out.shape(), {out.strides(), cpu::broadcast_strides(ac, out.shape()),
                                          cpu::broadcast_strides(bc, out.shape())});
    float* po = out.data<float>();
    const float* pa = ac.data<float>();
    const float* pb = bc.data<float>();
    parallel_for(0, out.numel(), cpu::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
      layout.for_each_run(lo, hi, [&](const auto& off, const auto& st, int64_t n) {
        if (st[0] == 1 && st[1] <= 1 && st[2] <= 1) {
          k.binary(op, po + off[0], pa + off[1], st[1], pb + off[2], st[2], n);
        } else {
          for (int64_t i = 0; i < n; ++i)
            po[off[0] + i * st[0]] = apply_binary(op, pa[off[1] + i * st[1]], pb[off[2] + i * st[2]]);
        }
      });
    });
    return out;
  }
  dispatch_numeric(dt, name, [&]<typename T>() {
    cpu::binary_generic<T, T, T>(out, ac, bc, [op](T x, T y) { return apply_binary(op, x, y); });
  });
  return out;
}

// The gradient for an input: undo broadcasting and come back to the input's dtype.
struct InputMeta {
  Shape shape;
  DType dtype;
  explicit InputMeta(const Tensor& t) : shape(t.shape()), dtype(t.dtype()) {}
};
Tensor grad_for(const Tensor& g, const InputMeta& input) {
  Tensor r = reduce_to_shape(g, input.shape);
  return r.dtype() == input.dtype ? r : to_dtype_raw(r, input.dtype);
}
Tensor grad_for(const Tensor& g, const Tensor& input) { return grad_for(g, InputMeta(input)); }

Tensor scalar_like(const Tensor& t, double v) {
  DType dt = t.dtype();
  if (!is_floating(dt) && (v != std::floor(v) || dt == DType::b8)) dt = DType::f32;
  return Tensor::scalar(v, dt);
}

}  // namespace

// ---------------------------------------------------------------- binary arithmetic

Tensor add(const Tensor& a, const Tensor& b) {
  TracedOp trace_;
  Tensor out = binary_forward(BinaryOp::add, a, b);
  return traced(trace_, "add", {a, b},
                           record("add", {a, b}, out,
                                  [a_ = InputMeta(a), b_ = InputMeta(b)](
                                      const Tensor& g, const std::vector<bool>& need) -> std::vector<Tensor> {
                                    return {need[0] ? grad_for(g, a_) : Tensor(), need[1] ? grad_for(g, b_) : Tensor()};
                                  }),
                           {});
}

Tensor sub(const Tensor& a, const Tensor& b) {
  TracedOp trace_;
  Tensor out = binary_forward(BinaryOp::sub, a, b);
  return traced(
      trace_, "sub", {a, b},
      record("sub", {a, b}, out,
             [a_ = InputMeta(a), b_ = InputMeta(b)](const Tensor& g,
                                                    const std::vector<bool>& need) -> std::vector<Tensor> {
               return {need[0] ? grad_for(g, a_) : Tensor(), need[1] ? grad_for(neg(g), b_) : Tensor()};
             }),
      {});
}

Tensor mul(const Tensor& a, const Tensor& b) {
  TracedOp trace_;
  Tensor out = binary_forward(BinaryOp::mul, a, b);
  if (!any_requires_grad({a, b})) return traced(trace_, "mul", {a, b}, out, {});
  return traced(trace_, "mul", {a, b},
                           record("mul", {a, b}, out,
                                  [a_ = SavedTensor(a, "mul"), b_ = SavedTensor(b, "mul")](
                                      const Tensor& g, const std::vector<bool>& need) -> std::vector<Tensor> {
                                    return {need[0] ? grad_for(mul(g, b_.get()), a_.get()) : Tensor(),
                                            need[1] ? grad_for(mul(g, a_.get()), b_.get()) : Tensor()};
                                  }),
                           {});
}

Tensor div(const Tensor& a, const Tensor& b) {
  TracedOp trace_;
  Tensor out = binary_forward(BinaryOp::div, a, b);
  if (!any_requires_grad({a, b})) return traced(trace_, "div", {a, b}, out, {});
  return traced(trace_, "div", {a, b},
                           record("div", {a, b}, out,
                                  [a_ = SavedTensor(a, "div"), b_ = SavedTensor(b, "div")](
                                      const Tensor& g, const std::vector<bool>& need) -> std::vector<Tensor> {
                                    const Tensor& a = a_.get();
                                    const Tensor& b = b_.get();
                                    return {need[0] ? grad_for(div(g, b), a) : Tensor(),
                                            need[1] ? grad_for(neg(div(mul(g, a), mul(b, b))), b) : Tensor()};
                                  }),
                           {});
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::pow, a, b);
  if (!any_requires_grad({a, b})) return out;
  return record("pow", {a, b}, out,
                [a_ = SavedTensor(a, "pow"), b_ = SavedTensor(b, "pow"), out_ = SavedTensor(out, "pow")](
                    const Tensor& g, const std::vector<bool>& need) -> std::vector<Tensor> {
                  const Tensor& a = a_.get();
                  const Tensor& b = b_.get();
                  Tensor ga, gb;
                  if (need[0]) ga = grad_for(mul(g, mul(b, pow(a, sub(b, 1.0)))), a);
                  if (need[1]) gb = grad_for(mul(g, mul(out_.get(), log(a))), b);
                  return {ga, gb};
                });
}

static Tensor extremum(BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(op, a, b);
  if (!any_requires_grad({a, b})) return out;
  // The gradient goes to the operand that was selected (to `a` on ties).
  return record(binary_name(op), {a, b}, out,
                [op, a_ = SavedTensor(a, "maximum"), b_ = SavedTensor(b, "maximum")](
                    const Tensor& g, const std::vector<bool>& need) -> std::vector<Tensor> {
                  const Tensor& a = a_.get();
                  const Tensor& b = b_.get();
                  Tensor pick_a = op == BinaryOp::maximum ? ge(a, b) : le(a, b);
                  Tensor zero = Tensor::scalar(0.0, g.dtype());
                  return {need[0] ? grad_for(where(pick_a, g, zero), a) : Tensor(),
                          need[1] ? grad_for(where(pick_a, zero, g), b) : Tensor()};
                });
}
Tensor maximum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::minimum, a, b); }

Tensor add(const Tensor& a, double b) { return add(a, scalar_like(a, b)); }
Tensor sub(const Tensor& a, double b) { return sub(a, scalar_like(a, b)); }
Tensor mul(const Tensor& a, double b) { return mul(a, scalar_like(a, b)); }
Tensor div(const Tensor& a, double b) { return div(a, scalar_like(a, b)); }
Tensor rsub(double a, const Tensor& b) { return sub(scalar_like(b, a), b); }
Tensor rdiv(double a, const Tensor& b) { return div(scalar_like(b, a), b); }

Tensor pow(const Tensor& a, double exponent) {
  if (exponent == 2.0) return mul(a, a);
  if (exponent == 1.0) return clone(a);
  Tensor e = scalar_like(a, exponent);
  Tensor out = binary_forward(BinaryOp::pow, a, e);
  return record("pow", {a}, out, [a_ = SavedTensor(a, "pow"), exponent](const Tensor& g, const std::vector<bool>&) {
    const Tensor& a = a_.get();
    return std::vector<Tensor>{grad_for(mul(g, mul(pow(a, exponent - 1.0), exponent)), a)};
  });
}

// ---------------------------------------------------------------- comparisons and where

namespace {
enum class Cmp { eq, ne, lt, le, gt, ge };
Tensor compare(Cmp c, const Tensor& a, const Tensor& b, const char* name) {
  DType dt = promote_types(a.dtype(), b.dtype());
  if (dt == DType::f16 || dt == DType::bf16) dt = DType::f32;
  Tensor ac = to_dtype_raw(a, dt), bc = to_dtype_raw(b, dt);
  Tensor out = Tensor::empty(broadcast_shapes(a.shape(), b.shape(), name), DType::b8);
  if (out.numel() == 0) return out;
  dispatch_all(dt, [&]<typename T>() {
    if constexpr (std::is_arithmetic_v<T>) {
      cpu::binary_generic<bool, T, T>(out, ac, bc, [c](T x, T y) {
        switch (c) {
          case Cmp::eq: return x == y;
          case Cmp::ne: return x != y;
          case Cmp::lt: return x < y;
          case Cmp::le: return x <= y;
          case Cmp::gt: return x > y;
          case Cmp::ge: return x >= y;
        }
        return false;
      });
    }
  });
  return out;
}
}  // namespace

Tensor eq(const Tensor& a, const Tensor& b) { return compare(Cmp::eq, a, b, "eq"); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare(Cmp::ne, a, b, "ne"); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare(Cmp::lt, a, b, "lt"); }
Tensor le(const Tensor& a, const Tensor& b) { return compare(Cmp::le, a, b, "le"); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare(Cmp::gt, a, b, "gt"); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare(Cmp::ge, a, b, "ge"); }
Tensor eq(const Tensor& a, double b) { return eq(a, scalar_like(a, b)); }
Tensor lt(const Tensor& a, double b) { return lt(a, scalar_like(a, b)); }
Tensor gt(const Tensor& a, double b) { return gt(a, scalar_like(a, b)); }

Tensor logical_not(const Tensor& a) {
  Tensor ab = to_dtype_raw(a, DType::b8);
  Tensor out = Tensor::empty(a.shape(), DType::b8);
  cpu::unary_generic<bool, bool>(out, ab, [](bool v) { return !v; });
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  KILN_CHECK_TYPE(cond.dtype() == DType::b8, "where: condition must be bool, got ", dtype_name(cond.dtype()));
  DType dt = promote_types(a.dtype(), b.dtype());
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor ac = to_dtype_raw(a, dt), bc = to_dtype_raw(b, dt);
  Tensor out = Tensor::empty(shape, dt);
  if (out.numel() > 0) {
    StridedLayout<4> layout(shape, {out.strides(), cpu::broadcast_strides(cond, shape),
                                    cpu::broadcast_strides(ac, shape), cpu::broadcast_strides(bc, shape)});
    dispatch_all(dt, [&]<typename T>() {
      T* po = static_cast<T*>(out.raw_data());
      const bool* pc = cond.data<bool>();
      const T* pa = static_cast<const T*>(ac.raw_data());
      const T* pb = static_cast<const T*>(bc.raw_data());
      parallel_for(0, out.numel(), cpu::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        layout.for_each_run(lo, hi, [&](const auto& off, const auto& st, int64_t n) {
          for (int64_t i = 0; i < n; ++i)
            po[off[0] + i * st[0]] = pc[off[1] + i * st[1]] ? pa[off[2] + i * st[2]] : pb[off[3] + i * st[3]];
        });
      });
    });
  }
  return record("where", {a, b}, out,
                [c_ = SavedTensor(cond, "where"), a_ = InputMeta(a), b_ = InputMeta(b)](const Tensor& g, const std::vector<bool>& need) {
                  Tensor zero = Tensor::scalar(0.0, g.dtype());
                  return std::vector<Tensor>{need[0] ? grad_for(where(c_.get(), g, zero), a_) : Tensor(),
                                             need[1] ? grad_for(where(c_.get(), zero, g), b_) : Tensor()};
                });
}

// ---------------------------------------------------------------- unary

namespace {

template <typename T>
T apply_unary(UnaryOp op, T v) {
  constexpr double kSqrt1_2 = 0.70710678118654752;
  switch (op) {
    case UnaryOp::neg: return -v;
    case UnaryOp::abs: return std::abs(v);
    case UnaryOp::exp: return std::exp(v);
    case UnaryOp::log: return std::log(v);
    case UnaryOp::sqrt: return std::sqrt(v);
    case UnaryOp::rsqrt: return T(1) / std::sqrt(v);
    case UnaryOp::tanh: return std::tanh(v);
    case UnaryOp::sigmoid: return T(1) / (T(1) + std::exp(-v));
    case UnaryOp::relu: return v > 0 ? v : T(0);
    case UnaryOp::gelu: return T(0.5) * v * (T(1) + std::erf(v * T(kSqrt1_2)));
    case UnaryOp::gelu_tanh:
      return T(0.5) * v * (T(1) + std::tanh(T(0.79788456080286536) * (v + T(0.044715) * v * v * v)));
    case UnaryOp::silu: return v / (T(1) + std::exp(-v));
  }
  return v;
}

template <typename T>
T apply_unary_backward(UnaryBackwardOp op, T s) {
  switch (op) {
    case UnaryBackwardOp::relu: return s > 0 ? T(1) : T(0);
    case UnaryBackwardOp::gelu:
      return T(0.5) * (T(1) + std::erf(s * T(0.70710678118654752))) +
             s * T(0.39894228040143268) * std::exp(T(-0.5) * s * s);
    case UnaryBackwardOp::gelu_tanh: {
      T c = T(0.79788456080286536);
      T t = std::tanh(c * (s + T(0.044715) * s * s * s));
      return T(0.5) * (T(1) + t) + T(0.5) * s * (T(1) - t * t) * c * (T(1) + T(3 * 0.044715) * s * s);
    }
    case UnaryBackwardOp::silu: {
      T sg = T(1) / (T(1) + std::exp(-s));
      return sg * (T(1) + s * (T(1) - sg));
    }
    case UnaryBackwardOp::tanh_from_out: return T(1) - s * s;
    case UnaryBackwardOp::sigmoid_from_out: return s * (T(1) - s);
  }
  return s;
}

Tensor unary_forward(UnaryOp op, const Tensor& x, const char* name) {
  if (op == UnaryOp::neg || op == UnaryOp::abs || op == UnaryOp::relu) {
    if (!is_floating(x.dtype())) {  // these three also make sense on integers
      Tensor out = Tensor::empty(x.shape(), x.dtype());
      dispatch_numeric(x.dtype(), name, [&]<typename T>() {
        cpu::unary_generic<T, T>(out, x, [op](T v) -> T {
          if (op == UnaryOp::neg) return static_cast<T>(-v);
          if (op == UnaryOp::abs) return v < 0 ? static_cast<T>(-v) : v;
          return v > 0 ? v : T(0);
        });
      });
      return out;
    }
  }
  DType dt = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor xc = contiguous_raw(to_dtype_raw(x, dt));
  Tensor out = Tensor::empty(x.shape(), dt);
  int64_t n = out.numel();
  if (dt == DType::f32) {
    const auto& k = cpu::float_kernels();
    const float* px = xc.data<float>();
    float* po = out.data<float>();
    parallel_for(0, n, cpu::kElementwiseGrain, [&](int64_t lo, int64_t hi) { k.unary(op, po + lo, px + lo, hi - lo); });
  } else {
    const double* px = xc.data<double>();
    double* po = out.data<double>();
    parallel_for(0, n, cpu::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) po[i] = apply_unary(op, px[i]);
    });
  }
  return out;
}

// grad_in = g * f'(saved), both same shape.
Tensor unary_backward(UnaryBackwardOp op, const Tensor& g, const Tensor& saved) {
  Tensor gc = contiguous_raw(to_dtype_raw(g, saved.dtype()));
  Tensor sc = contiguous_raw(saved);
  Tensor out = Tensor::empty(saved.shape(), saved.dtype());
  int64_t n = out.numel();
  if (saved.dtype() == DType::f32) {
    const auto& k = cpu::float_kernels();
    parallel_for(0, n, cpu::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
      k.unary_backward(op, out.data<float>() + lo, gc.data<float>() + lo, sc.data<float>() + lo, hi - lo);
    });
  } else {
    dispatch_float(saved.dtype(), "unary backward", [&]<typename T>() {
      T* po = out.data<T>();
      const T* pg = gc.data<T>();
      const T* ps = sc.data<T>();
      for (int64_t i = 0; i < n; ++i) po[i] = pg[i] * apply_unary_backward(op, ps[i]);
    });
  }
  return out;
}

// Unary op whose derivative is computed by a fused backward kernel from the input or output.
Tensor unary_with_kernel_backward(UnaryOp op, UnaryBackwardOp bop, bool from_output, const Tensor& x,
                                  const char* name) {
  Tensor out = unary_forward(op, x, name);
  if (!any_requires_grad({x})) return out;
  SavedTensor saved(from_output ? out : x, name);
  return record(name, {x}, out, [saved, bop](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{unary_backward(bop, g, saved.get())};
  });
}

}  // namespace

Tensor neg(const Tensor& x) {
  TracedOp trace_;
  return traced(
      trace_, "neg", {x},
      record("neg", {x}, unary_forward(UnaryOp::neg, x, "neg"),
             [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{neg(g)}; }),
      {});
}

Tensor abs(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::abs, x, "abs");
  return record("abs", {x}, out, [x_ = SavedTensor(x, "abs")](const Tensor& g, const std::vector<bool>&) {
    const Tensor& x = x_.get();
    Tensor zero = Tensor::scalar(0.0, g.dtype());
    Tensor sign = sub(to(gt(x, 0.0), g.dtype()), to(lt(x, 0.0), g.dtype()));
    return std::vector<Tensor>{mul(g, sign)};
  });
}

Tensor exp(const Tensor& x) {
  TracedOp trace_;
  Tensor out = unary_forward(UnaryOp::exp, x, "exp");
  if (!any_requires_grad({x})) return traced(trace_, "exp", {x}, out, {});
  return traced(trace_, "exp", {x},
                           record("exp", {x}, out,
                                  [y_ = SavedTensor(out, "exp")](const Tensor& g, const std::vector<bool>&) {
                                    return std::vector<Tensor>{mul(g, y_.get())};
                                  }),
                           {});
}

Tensor log(const Tensor& x) {
  TracedOp trace_;
  Tensor out = unary_forward(UnaryOp::log, x, "log");
  return traced(trace_, "log", {x},
                           record("log", {x}, out,
                                  [x_ = SavedTensor(x, "log")](const Tensor& g, const std::vector<bool>&) {
                                    return std::vector<Tensor>{div(g, x_.get())};
                                  }),
                           {});
}

Tensor sqrt(const Tensor& x) {
  TracedOp trace_;
  Tensor out = unary_forward(UnaryOp::sqrt, x, "sqrt");
  if (!any_requires_grad({x})) return traced(trace_, "sqrt", {x}, out, {});
  return traced(trace_, "sqrt", {x},
                           record("sqrt", {x}, out,
                                  [y_ = SavedTensor(out, "sqrt")](const Tensor& g, const std::vector<bool>&) {
                                    return std::vector<Tensor>{div(mul(g, 0.5), y_.get())};
                                  }),
                           {});
}

Tensor rsqrt(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::rsqrt, x, "rsqrt");
  if (!any_requires_grad({x})) return out;
  return record("rsqrt", {x}, out, [y_ = SavedTensor(out, "rsqrt")](const Tensor& g, const std::vector<bool>&) {
    const Tensor& y = y_.get();
    return std::vector<Tensor>{mul(g, mul(mul(y, mul(y, y)), -0.5))};
  });
}

Tensor tanh(const Tensor& x) {
  TracedOp trace_;
  return traced(trace_, "tanh", {x},
                           unary_with_kernel_backward(UnaryOp::tanh, UnaryBackwardOp::tanh_from_out, true, x, "tanh"),
                           {});
}
Tensor sigmoid(const Tensor& x) {
  TracedOp trace_;
  return traced(
      trace_, "sigmoid", {x},
      unary_with_kernel_backward(UnaryOp::sigmoid, UnaryBackwardOp::sigmoid_from_out, true, x, "sigmoid"), {});
}
Tensor relu(const Tensor& x) {
  TracedOp trace_;
  if (!is_floating(x.dtype()))
    return traced(trace_, "relu", {x}, unary_forward(UnaryOp::relu, x, "relu"), {});
  return traced(trace_, "relu", {x},
                           unary_with_kernel_backward(UnaryOp::relu, UnaryBackwardOp::relu, false, x, "relu"), {});
}
Tensor relu_backward_from_output(const Tensor& g, const Tensor& y) {
  return unary_backward(UnaryBackwardOp::relu, g, y);
}
Tensor gelu(const Tensor& x, GeluApprox approx) {
  TracedOp trace_;
  if (approx == GeluApprox::tanh)
    return traced(
        trace_, "gelu", {x},
        unary_with_kernel_backward(UnaryOp::gelu_tanh, UnaryBackwardOp::gelu_tanh, false, x, "gelu"),
        {{"approximate", std::string(approx == GeluApprox::tanh ? "tanh" : "none")}});
  return traced(trace_, "gelu", {x},
                           unary_with_kernel_backward(UnaryOp::gelu, UnaryBackwardOp::gelu, false, x, "gelu"),
                           {{"approximate", std::string(approx == GeluApprox::tanh ? "tanh" : "none")}});
}
Tensor silu(const Tensor& x) {
  return unary_with_kernel_backward(UnaryOp::silu, UnaryBackwardOp::silu, false, x, "silu");
}

Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi) {
  KILN_CHECK(!(lo && hi) || *lo <= *hi, "clamp: lower bound ", *lo, " exceeds upper bound ", *hi);
  double l = lo.value_or(-INFINITY), h = hi.value_or(INFINITY);
  Tensor out;
  if (x.dtype() == DType::f32) {
    Tensor xc = contiguous_raw(x);
    out = Tensor::empty(x.shape(), DType::f32);
    const auto& k = cpu::float_kernels();
    parallel_for(0, out.numel(), cpu::kElementwiseGrain, [&](int64_t a, int64_t b) {
      k.clamp(out.data<float>() + a, xc.data<float>() + a, static_cast<float>(l), static_cast<float>(h), b - a);
    });
  } else {
    out = Tensor::empty(x.shape(), x.dtype());
    dispatch_numeric(x.dtype(), "clamp", [&]<typename T>() {
      cpu::unary_generic<T, T>(out, x, [l, h](T v) -> T {
        double d = static_cast<double>(v);
        return static_cast<T>(d < l ? l : (d > h ? h : d));
      });
    });
  }
  if (!any_requires_grad({x})) return out;
  return record("clamp", {x}, out, [x_ = SavedTensor(x, "clamp"), l, h](const Tensor& g, const std::vector<bool>&) {
    const Tensor& x = x_.get();
    Tensor inside = to(mul(to(ge(x, Tensor::scalar(l, x.dtype())), x.dtype()),
                           to(le(x, Tensor::scalar(h, x.dtype())), x.dtype())), g.dtype());
    return std::vector<Tensor>{mul(g, inside)};
  });
}

// ---------------------------------------------------------------- conversion and copies

Tensor to(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = to_dtype_raw(x, dtype);
  if (!is_floating(dtype) || !any_requires_grad({x})) return out;
  DType from = x.dtype();
  return record("to", {x}, out, [from](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{to_dtype_raw(g, from)};
  });
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  return clone(x);
}

Tensor clone(const Tensor& x) {
  return record("clone", {x}, clone_raw(x),
                [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g}; });
}

// ---------------------------------------------------------------- in-place

Tensor& add_(Tensor& t, const Tensor& other, double alpha) {
  check_inplace(t, "add_");
  if (t.dtype() == DType::f32 && other.dtype() == DType::f32 && t.is_contiguous() && other.is_contiguous() &&
      t.shape() == other.shape()) {
    const auto& k = cpu::float_kernels();
    float* y = t.data<float>();
    const float* x = other.data<float>();
    parallel_for(0, t.numel(), cpu::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
      k.axpy(y + lo, static_cast<float>(alpha), x + lo, hi - lo);
    });
  } else {
    NoGradGuard guard;
    Tensor r = add(t, alpha == 1.0 ? other : mul(other, alpha));
    KILN_CHECK(r.shape() == t.shape(), "add_: ", shape_str(other.shape()), " does not broadcast to ",
               shape_str(t.shape()));
    copy_into(t, r);
  }
  t.bump_version();
  return t;
}

Tensor& mul_(Tensor& t, double s) {
  check_inplace(t, "mul_");
  if (t.dtype() == DType::f32 && t.is_contiguous()) {
    const auto& k = cpu::float_kernels();
    float* y = t.data<float>();
    parallel_for(0, t.numel(), cpu::kElementwiseGrain,
                 [&](int64_t lo, int64_t hi) { k.scale(y + lo, static_cast<float>(s), hi - lo); });
  } else {
    NoGradGuard guard;
    copy_into(t, mul(t, s));
  }
  t.bump_version();
  return t;
}

Tensor& mul_(Tensor& t, const Tensor& other) {
  check_inplace(t, "mul_");
  NoGradGuard guard;
  Tensor r = mul(t, other);
  KILN_CHECK(r.shape() == t.shape(), "mul_: ", shape_str(other.shape()), " does not broadcast to ",
             shape_str(t.shape()));
  copy_into(t, r);
  t.bump_version();
  return t;
}

Tensor& zero_(Tensor& t) { return fill_(t, 0.0); }

Tensor& fill_(Tensor& t, double v) {
  check_inplace(t, "fill_");
  fill_raw(t, v);
  t.bump_version();
  return t;
}

Tensor& copy_(Tensor& dst, const Tensor& src) {
  check_inplace(dst, "copy_");
  Shape bs = broadcast_shapes(dst.shape(), src.shape(), "copy_");
  KILN_CHECK(bs == dst.shape(), "copy_: source ", shape_str(src.shape()), " does not broadcast to ",
             shape_str(dst.shape()));
  Tensor s = src.shape() == dst.shape() ? src : src.as_strided(dst.shape(), cpu::broadcast_strides(src, dst.shape()), src.offset());
  copy_into(dst, s);
  dst.bump_version();
  return dst;
}

}  // namespace kiln::ops
