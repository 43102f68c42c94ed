// Elementwise inference ops (inference_ops.h): unary float math, sign, logical ops, mod and
// prelu. Forward only; contiguous inputs run a flat loop the compiler can vectorise, strided
// and broadcast ones go through the generic strided drivers.
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kiln/ops/cpu/elementwise_loops.h"
#include "kiln/ops/cpu/vec_math.h"
#include "kiln/ops/inference_ops.h"

namespace kiln::ops {

namespace {

// The dtype float math runs in: f64 stays, f16/bf16 widen to f32, integers are rejected.
DType float_compute_dtype(DType in, const char* name) {
  if (in == DType::f16 || in == DType::bf16) return DType::f32;
  dispatch_float(in, name, []<typename T>() {});  // throws the standard TypeError for others
  return in;
}

// out = f(x) elementwise in T, threaded for large tensors.
template <typename T, typename F>
void map_into(const Tensor& out, const Tensor& x, F f) {
  if (out.numel() == 0) return;
  if (!x.is_contiguous()) {
    cpu::unary_generic<T, T>(out, x, f);
    return;
  }
  const T* px = x.data<T>();
  T* po = out.data<T>();
  parallel_for(0, out.numel(), cpu::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) po[i] = f(px[i]);
  });
}

// A unary float op: f is a generic lambda called with a value of the compute type.
template <typename F>
Tensor float_unary(const Tensor& x, const char* name, F f) {
  DType dt = float_compute_dtype(x.dtype(), name);
  Tensor xc = to_dtype_raw(x, dt);
  Tensor out = Tensor::empty(x.shape(), dt);
  dispatch_float(dt, name, [&]<typename T>() { map_into<T>(out, xc, [f](T v) -> T { return f(v); }); });
  return dt == x.dtype() ? out : to_dtype_raw(out, x.dtype());
}

}  // namespace

// ---------------------------------------------------------------- unary float math

namespace {

// Branch-free building blocks, so GCC vectorises the loops: it does not if-convert a float
// select whose arm computes something under its default -ftrapping-math, and one such ternary
// leaves the whole loop scalar (see cpu/vec_math.h). f32 uses the vectorisable vec_math
// functions; f64 calls libm.
inline float sel(bool c, float a, float b) { return cpu::vm_select(c, a, b); }
inline double sel(bool c, double a, double b) {
  int64_t m = -static_cast<int64_t>(c), ia, ib;
  std::memcpy(&ia, &a, 8);
  std::memcpy(&ib, &b, 8);
  int64_t r = (ia & m) | (ib & ~m);
  double out;
  std::memcpy(&out, &r, 8);
  return out;
}
inline float fexp(float v) { return cpu::vm_exp(v); }
inline double fexp(double v) { return std::exp(v); }
inline float flog(float v) { return cpu::vm_log(v); }
inline double flog(double v) { return std::log(v); }
inline float ferf(float v) { return cpu::vm_erf(v); }
inline double ferf(double v) { return std::erf(v); }

// Round half to even for |v| < 2^mantissa by adding and subtracting 2^mantissa (exact in the
// default rounding mode, and no SSE4.1 roundps needed); larger values are already integers.
// The sign is copied back so that -0.3 rounds to -0, as nearbyint does.
template <typename T>
T round_even(T v) {
  constexpr T kBig = std::is_same_v<T, float> ? T(8388608.0) : T(4503599627370496.0);  // 2^23, 2^52
  T a = std::abs(v);
  T r = (a + kBig) - kBig;
  return sel(a < kBig, std::copysign(r, v), v);
}

}  // namespace

Tensor erf(const Tensor& x) {
  return float_unary(x, "erf", [](auto v) { return ferf(v); });
}

Tensor leaky_relu(const Tensor& x, double alpha) {
  return float_unary(x, "leaky_relu", [alpha](auto v) {
    using T = decltype(v);
    return sel(v < T(0), static_cast<T>(alpha) * v, v);
  });
}

Tensor hard_sigmoid(const Tensor& x, double alpha, double beta) {
  return float_unary(x, "hard_sigmoid", [alpha, beta](auto v) {
    using T = decltype(v);
    T y = static_cast<T>(alpha) * v + static_cast<T>(beta);
    return sel(y < T(0), T(0), sel(y > T(1), T(1), y));  // NaN passes through
  });
}

Tensor hard_swish(const Tensor& x) {
  return float_unary(x, "hard_swish", [](auto v) {
    using T = decltype(v);
    T y = v / T(6) + T(0.5);
    return v * sel(y < T(0), T(0), sel(y > T(1), T(1), y));
  });
}

Tensor elu(const Tensor& x, double alpha) {
  return float_unary(x, "elu", [alpha](auto v) {
    using T = decltype(v);
    return sel(v < T(0), static_cast<T>(alpha) * (fexp(v) - T(1)), v);
  });
}

Tensor selu(const Tensor& x, double alpha, double gamma) {
  return float_unary(x, "selu", [alpha, gamma](auto v) {
    using T = decltype(v);
    T a = static_cast<T>(alpha), g = static_cast<T>(gamma);
    return g * sel(v <= T(0), a * (fexp(v) - T(1)), v);
  });
}

Tensor softplus(const Tensor& x) {
  // log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): e^x never overflows.
  return float_unary(x, "softplus", [](auto v) {
    using T = decltype(v);
    return sel(v > T(0), v, T(0)) + flog(T(1) + fexp(-std::abs(v)));
  });
}

Tensor softsign(const Tensor& x) {
  return float_unary(x, "softsign", [](auto v) {
    using T = decltype(v);
    return v / (T(1) + std::abs(v));
  });
}

Tensor reciprocal(const Tensor& x) {
  return float_unary(x, "reciprocal", [](auto v) {
    using T = decltype(v);
    return T(1) / v;
  });
}

Tensor round(const Tensor& x) {
  return float_unary(x, "round", [](auto v) { return round_even(v); });
}
Tensor floor(const Tensor& x) {
  // One below the nearest integer when that lies above; the sign of zero follows x (floor(-0) = -0).
  return float_unary(x, "floor", [](auto v) {
    using T = decltype(v);
    T r = round_even(v);
    return std::copysign(r - sel(r > v, T(1), T(0)), v);
  });
}
Tensor ceil(const Tensor& x) {
  return float_unary(x, "ceil", [](auto v) {
    using T = decltype(v);
    T r = round_even(v);
    return std::copysign(r + sel(r < v, T(1), T(0)), v);  // ceil(-0.3) = -0
  });
}
Tensor sin(const Tensor& x) {
  return float_unary(x, "sin", [](auto v) { return std::sin(v); });
}
Tensor cos(const Tensor& x) {
  return float_unary(x, "cos", [](auto v) { return std::cos(v); });
}

Tensor sign(const Tensor& x) {
  DType in = x.dtype();
  DType dt = (in == DType::f16 || in == DType::bf16) ? DType::f32 : in;
  Tensor xc = to_dtype_raw(x, dt);
  Tensor out = Tensor::empty(x.shape(), dt);
  dispatch_numeric(dt, "sign", [&]<typename T>() {
    map_into<T>(out, xc, [](T v) -> T {
      if (v > T(0)) return T(1);
      if constexpr (std::is_signed_v<T>)
        if (v < T(0)) return T(-1);
      return v;  // zero (keeping -0.0) or NaN
    });
  });
  return dt == in ? out : to_dtype_raw(out, in);
}

// ---------------------------------------------------------------- logical

namespace {
template <typename F>
Tensor logical_binary(const Tensor& a, const Tensor& b, const char* name, F f) {
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor ab = to_dtype_raw(a, DType::b8), bb = to_dtype_raw(b, DType::b8);
  Tensor out = Tensor::empty(shape, DType::b8);
  if (out.numel() > 0) cpu::binary_generic<bool, bool, bool>(out, ab, bb, f);
  return out;
}
}  // namespace

Tensor logical_and(const Tensor& a, const Tensor& b) {
  return logical_binary(a, b, "logical_and", [](bool x, bool y) { return x && y; });
}
Tensor logical_or(const Tensor& a, const Tensor& b) {
  return logical_binary(a, b, "logical_or", [](bool x, bool y) { return x || y; });
}
Tensor logical_xor(const Tensor& a, const Tensor& b) {
  return logical_binary(a, b, "logical_xor", [](bool x, bool y) { return x != y; });
}

// ---------------------------------------------------------------- mod

namespace {
// Truncated integer remainder (C's %), safe for MIN % -1 (which traps on x86).
template <typename T>
T trunc_rem(T a, T b) {
  if constexpr (std::is_signed_v<T>)
    if (b == T(-1)) return T(0);
  return static_cast<T>(a % b);
}
}  // namespace

Tensor mod(const Tensor& a, const Tensor& b, bool fmod) {
  DType dt = promote_types(a.dtype(), b.dtype());
  KILN_CHECK_TYPE(dt != DType::b8, "mod: not defined for bool tensors");
  KILN_CHECK_TYPE(fmod || !is_floating(dt), "mod: fmod=0 (the sign of the divisor) is for integer tensors, got ",
                  dtype_name(a.dtype()), " and ", dtype_name(b.dtype()),
                  "\nhelp: ONNX requires fmod=1 (C fmod) for floating-point inputs");
  DType compute = (dt == DType::f16 || dt == DType::bf16) ? DType::f32 : dt;
  Tensor ac = to_dtype_raw(a, compute), bc = to_dtype_raw(b, compute);
  Tensor out = Tensor::empty(broadcast_shapes(a.shape(), b.shape(), "mod"), compute);
  dispatch_numeric(compute, "mod", [&]<typename T>() {
    if constexpr (std::is_integral_v<T>) {
      // Integer division by zero is undefined behaviour: check the divisor before the kernel.
      Tensor bcc = contiguous_raw(bc);
      const T* pb = bcc.data<T>();
      for (int64_t i = 0; i < bcc.numel(); ++i)
        KILN_CHECK(pb[i] != T(0), "mod: integer division by zero (divisor ", shape_str(b.shape()),
                   " has a zero at flat index ", i, ")");
    }
    if (out.numel() == 0) return;
    if constexpr (std::is_floating_point_v<T>) {
      cpu::binary_generic<T, T, T>(out, ac, bc, [](T x, T y) { return std::fmod(x, y); });
    } else if (fmod) {
      cpu::binary_generic<T, T, T>(out, ac, bc, [](T x, T y) { return trunc_rem(x, y); });
    } else {
      cpu::binary_generic<T, T, T>(out, ac, bc, [](T x, T y) {
        T r = trunc_rem(x, y);
        if constexpr (std::is_signed_v<T>)
          if (r != T(0) && ((r < T(0)) != (y < T(0)))) r = static_cast<T>(r + y);
        return r;
      });
    }
  });
  return compute == dt ? out : to_dtype_raw(out, dt);
}

// ---------------------------------------------------------------- prelu

Tensor prelu(const Tensor& x, const Tensor& slope) {
  DType dt = promote_types(x.dtype(), slope.dtype());
  KILN_CHECK_TYPE(dt != DType::b8, "prelu: not defined for bool tensors");
  // Unidirectional: slope's dims, right-aligned, equal x's or are 1; x's shape never grows.
  bool fits = slope.dim() <= x.dim();
  for (int64_t i = 1; fits && i <= slope.dim(); ++i) {
    int64_t s = slope.shape()[slope.dim() - i];
    fits = s == 1 || s == x.shape()[x.dim() - i];
  }
  const Shape& shape = x.shape();
  KILN_CHECK(fits, "prelu: slope ", shape_str(slope.shape()), " does not broadcast to input ",
             shape_str(x.shape()), " (the slope must broadcast to the input's shape)",
             "\nhelp: a per-channel slope for (N, C, H, W) input has shape (C, 1, 1)");
  DType compute = (dt == DType::f16 || dt == DType::bf16) ? DType::f32 : dt;
  Tensor xc = to_dtype_raw(x, compute), sc = to_dtype_raw(slope, compute);
  Tensor out = Tensor::empty(shape, compute);
  dispatch_numeric(compute, "prelu", [&]<typename T>() {
    if (out.numel() > 0)
      cpu::binary_generic<T, T, T>(out, xc, sc, [](T v, T s) -> T {
        if constexpr (std::is_floating_point_v<T>) return sel(v < T(0), s * v, v);
        else return v < T(0) ? static_cast<T>(s * v) : v;
      });
  });
  return compute == dt ? out : to_dtype_raw(out, dt);
}

}  // namespace kiln::ops
