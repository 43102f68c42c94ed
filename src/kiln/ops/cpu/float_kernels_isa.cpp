// One instruction set's build of the f32 inner loops (see float_kernels.h). CMake compiles this
// file once per ISA with KILN_ISA_NS set to the namespace and the matching -m flags; the loops
// are plain C++ that GCC vectorises for whichever ISA the file is built for.
#include <cmath>

#include "kiln/ops/cpu/float_kernels.h"
#include "kiln/ops/cpu/vec_math.h"

#ifndef KILN_ISA_NS
#error "KILN_ISA_NS must name the ISA namespace"
#endif

namespace kiln::ops::cpu::KILN_ISA_NS {

namespace {

constexpr float kSqrt1_2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

template <typename F>
inline void binary_loop(F f, float* __restrict o, const float* __restrict a, int64_t sa,
                        const float* __restrict b, int64_t sb, int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
  } else if (sa == 1) {
    const float bv = b[0];
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
  } else if (sb == 1) {
    const float av = a[0];
    for (int64_t i = 0; i < n; ++i) o[i] = f(av, b[i]);
  } else {
    const float v = f(a[0], b[0]);
    for (int64_t i = 0; i < n; ++i) o[i] = v;
  }
}

void binary(BinaryOp op, float* o, const float* a, int64_t sa, const float* b, int64_t sb, int64_t n) {
  switch (op) {
    case BinaryOp::add: return binary_loop([](float x, float y) { return x + y; }, o, a, sa, b, sb, n);
    case BinaryOp::sub: return binary_loop([](float x, float y) { return x - y; }, o, a, sa, b, sb, n);
    case BinaryOp::mul: return binary_loop([](float x, float y) { return x * y; }, o, a, sa, b, sb, n);
    case BinaryOp::div: return binary_loop([](float x, float y) { return x / y; }, o, a, sa, b, sb, n);
    case BinaryOp::maximum:
      return binary_loop([](float x, float y) { return x != x ? x : (x > y || y != y ? x : y); }, o, a, sa, b, sb, n);
    case BinaryOp::minimum:
      return binary_loop([](float x, float y) { return x != x ? x : (x < y || y != y ? x : y); }, o, a, sa, b, sb, n);
    case BinaryOp::pow:
      for (int64_t i = 0; i < n; ++i) o[i] = std::pow(a[i * sa], b[i * sb]);
      return;
  }
}

template <typename F>
inline void unary_loop(F f, float* __restrict o, const float* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = f(x[i]);
}

void unary(UnaryOp op, float* o, const float* x, int64_t n) {
  switch (op) {
    case UnaryOp::neg: return unary_loop([](float v) { return -v; }, o, x, n);
    case UnaryOp::abs: return unary_loop([](float v) { return v < 0 ? -v : v; }, o, x, n);
    case UnaryOp::exp: return unary_loop([](float v) { return vm_exp(v); }, o, x, n);
    case UnaryOp::log: return unary_loop([](float v) { return vm_log(v); }, o, x, n);
    case UnaryOp::sqrt: return unary_loop([](float v) { return std::sqrt(v); }, o, x, n);
    case UnaryOp::rsqrt: return unary_loop([](float v) { return 1.0f / std::sqrt(v); }, o, x, n);
    case UnaryOp::tanh: return unary_loop([](float v) { return vm_tanh(v); }, o, x, n);
    case UnaryOp::sigmoid: return unary_loop([](float v) { return vm_sigmoid(v); }, o, x, n);
    case UnaryOp::relu: return unary_loop([](float v) { return v > 0 ? v : 0.0f; }, o, x, n);
    case UnaryOp::gelu:
      return unary_loop([](float v) { return 0.5f * v * (1.0f + vm_erf(v * kSqrt1_2)); }, o, x, n);
    case UnaryOp::gelu_tanh:
      return unary_loop([](float v) { return vm_gelu_tanh(v); }, o, x, n);
    case UnaryOp::silu: return unary_loop([](float v) { return v * vm_sigmoid(v); }, o, x, n);
  }
}

template <typename F>
inline void backward_loop(F f, float* __restrict gin, const float* __restrict g, const float* __restrict s,
                          int64_t n) {
  for (int64_t i = 0; i < n; ++i) gin[i] = g[i] * f(s[i]);
}

void unary_backward(UnaryBackwardOp op, float* gin, const float* g, const float* s, int64_t n) {
  switch (op) {
    case UnaryBackwardOp::relu: return backward_loop([](float x) { return x > 0 ? 1.0f : 0.0f; }, gin, g, s, n);
    case UnaryBackwardOp::gelu:
      // d/dx x*Phi(x) = Phi(x) + x*phi(x)
      return backward_loop(
          [](float x) { return 0.5f * (1.0f + vm_erf(x * kSqrt1_2)) + x * kInvSqrt2Pi * vm_exp(-0.5f * x * x); },
          gin, g, s, n);
    case UnaryBackwardOp::gelu_tanh:
      return backward_loop([](float x) { return vm_gelu_tanh_grad(x); }, gin, g, s, n);
    case UnaryBackwardOp::silu:
      return backward_loop(
          [](float x) {
            float sg = vm_sigmoid(x);
            return sg * (1.0f + x * (1.0f - sg));
          },
          gin, g, s, n);
    case UnaryBackwardOp::tanh_from_out: return backward_loop([](float y) { return 1.0f - y * y; }, gin, g, s, n);
    case UnaryBackwardOp::sigmoid_from_out: return backward_loop([](float y) { return y * (1.0f - y); }, gin, g, s, n);
  }
}

void clamp(float* __restrict o, const float* __restrict x, float lo, float hi, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i] < lo ? lo : x[i];
    o[i] = v > hi ? hi : v;
  }
}

void axpy(float* __restrict y, float alpha, const float* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void scale(float* __restrict y, float alpha, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= alpha;
}

// 16 independent f32 lanes folded into f64 per block of 1024: vectorisable, fixed order, and
// far more accurate than one running f32 sum.
double sum(const float* __restrict x, int64_t n) {
  double total = 0.0;
  for (int64_t base = 0; base < n; base += 1024) {
    int64_t len = n - base < 1024 ? n - base : 1024;
    float lanes[16] = {};
    int64_t i = 0;
    for (; i + 16 <= len; i += 16)
      for (int k = 0; k < 16; ++k) lanes[k] += x[base + i + k];
    for (; i < len; ++i) lanes[i & 15] += x[base + i];
    double block = 0.0;
    for (int k = 0; k < 16; ++k) block += lanes[k];
    total += block;
  }
  return total;
}

void adam(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t n,
          const AdamStep& s) {
  for (int64_t j = 0; j < n; ++j) {
    float pj = p[j] * s.decay;
    float gj = g[j] + s.l2 * pj;
    float mj = m[j] + s.w1 * (gj - m[j]);
    float vj = s.b2 * v[j] + s.w2 * gj * gj;
    m[j] = mj;
    v[j] = vj;
    p[j] = pj - s.step_size * (mj / (std::sqrt(vj) / s.bc2_sqrt + s.eps));
  }
}

}  // namespace

extern const FloatKernels kFloatKernels;
const FloatKernels kFloatKernels = {KILN_ISA_NAME, binary, unary, unary_backward, clamp, axpy, scale, sum, adam};

}  // namespace kiln::ops::cpu::KILN_ISA_NS
