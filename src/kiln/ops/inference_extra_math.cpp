// Elementwise ops of inference_extra.h: trigonometric and hyperbolic functions, celu,
// thresholded_relu, shrink, is_inf and is_nan. Forward only; contiguous inputs run a flat
// threaded loop, strided ones the generic strided driver.
#include <cmath>
#include <type_traits>

#include "kiln/ops/cpu/elementwise_loops.h"
#include "kiln/ops/inference_extra.h"

namespace kiln::ops {

namespace {

// out = f(x) elementwise, out contiguous and of x's shape.
template <typename O, typename X, typename F>
void map_into(const Tensor& out, const Tensor& x, F f) {
  if (out.numel() == 0) return;
  if (!x.is_contiguous()) {
    cpu::unary_generic<O, X>(out, x, f);
    return;
  }
  const X* px = x.data<X>();
  O* po = out.data<O>();
  parallel_for(0, out.numel(), cpu::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) po[i] = f(px[i]);
  });
}

// The dtype float math runs in: f32/f64 stay, f16/bf16 widen to f32, others are a TypeError.
DType float_compute_dtype(DType in, const char* name) {
  if (in == DType::f16 || in == DType::bf16) return DType::f32;
  dispatch_float(in, name, []<typename T>() {});
  return in;
}

// A unary float op; f is a generic lambda called with a value of the compute type.
template <typename F>
Tensor float_unary(const Tensor& x, const char* name, F f) {
  DType dt = float_compute_dtype(x.dtype(), name);
  Tensor xc = to_dtype_raw(x, dt);
  Tensor out = Tensor::empty(x.shape(), dt);
  dispatch_float(dt, name, [&]<typename T>() { map_into<T, T>(out, xc, [f](T v) -> T { return f(v); }); });
  return dt == x.dtype() ? out : to_dtype_raw(out, x.dtype());
}

// A float -> bool predicate; integer and bool inputs are never inf/NaN (all false).
template <typename F>
Tensor float_predicate(const Tensor& x, F f) {
  Tensor out = Tensor::zeros(x.shape(), DType::b8);
  if (!is_floating(x.dtype())) return out;
  DType dt = x.dtype() == DType::f64 ? DType::f64 : DType::f32;  // f16/bf16 widen exactly
  Tensor xc = to_dtype_raw(x, dt);
  dispatch_float(dt, "is_inf", [&]<typename T>() { map_into<bool, T>(out, xc, [f](T v) { return f(v); }); });
  return out;
}

}  // namespace

// ---------------------------------------------------------------- trigonometric, hyperbolic

Tensor tan(const Tensor& x) {
  return float_unary(x, "tan", [](auto v) { return std::tan(v); });
}
Tensor sinh(const Tensor& x) {
  return float_unary(x, "sinh", [](auto v) { return std::sinh(v); });
}
Tensor cosh(const Tensor& x) {
  return float_unary(x, "cosh", [](auto v) { return std::cosh(v); });
}
Tensor asin(const Tensor& x) {
  return float_unary(x, "asin", [](auto v) { return std::asin(v); });
}
Tensor acos(const Tensor& x) {
  return float_unary(x, "acos", [](auto v) { return std::acos(v); });
}
Tensor atan(const Tensor& x) {
  return float_unary(x, "atan", [](auto v) { return std::atan(v); });
}
Tensor asinh(const Tensor& x) {
  return float_unary(x, "asinh", [](auto v) { return std::asinh(v); });
}
Tensor acosh(const Tensor& x) {
  return float_unary(x, "acosh", [](auto v) { return std::acosh(v); });
}
Tensor atanh(const Tensor& x) {
  return float_unary(x, "atanh", [](auto v) { return std::atanh(v); });
}

// ---------------------------------------------------------------- activations

Tensor celu(const Tensor& x, double alpha) {
  KILN_CHECK(alpha != 0.0, "celu: alpha must be nonzero (it divides x), got 0");
  return float_unary(x, "celu", [alpha](auto v) {
    using T = decltype(v);
    T a = static_cast<T>(alpha);
    // expm1 keeps precision for small x / alpha, where e^(x/alpha) - 1 would cancel.
    return v > T(0) ? v : a * std::expm1(v / a);
  });
}

Tensor thresholded_relu(const Tensor& x, double alpha) {
  return float_unary(x, "thresholded_relu", [alpha](auto v) {
    using T = decltype(v);
    return v > static_cast<T>(alpha) ? v : T(0);
  });
}

Tensor shrink(const Tensor& x, double lambd, double bias) {
  DType in = x.dtype();
  KILN_CHECK_TYPE(in != DType::b8, "shrink: not defined for bool tensors");
  DType dt = (in == DType::f16 || in == DType::bf16) ? DType::f32 : in;
  Tensor xc = to_dtype_raw(x, dt);
  Tensor out = Tensor::empty(x.shape(), dt);
  dispatch_numeric(dt, "shrink", [&]<typename T>() {
    map_into<T, T>(out, xc, [lambd, bias](T v) -> T {
      // Compared and shifted in double so integer inputs take fractional lambd/bias as ONNX does
      // (the result is cast back to the input type).
      double d = static_cast<double>(v);
      if (d < -lambd) return static_cast<T>(d + bias);
      if (d > lambd) return static_cast<T>(d - bias);
      return T(0);
    });
  });
  return dt == in ? out : to_dtype_raw(out, in);
}

// ---------------------------------------------------------------- classification

Tensor is_inf(const Tensor& x, bool detect_positive, bool detect_negative) {
  return float_predicate(x, [detect_positive, detect_negative](auto v) {
    return std::isinf(v) && (v > 0 ? detect_positive : detect_negative);
  });
}

Tensor is_nan(const Tensor& x) {
  return float_predicate(x, [](auto v) { return std::isnan(v); });
}

}  // namespace kiln::ops
