// The f32 inner loops that dominate elementwise work, compiled once per instruction set
// (float_kernels_isa.cpp built three times: portable, AVX2+FMA, AVX-512) and chosen at run time
// from CPUID. Each function processes one run of `n` elements; a stride of 0 or 1 per input
// covers contiguous data and broadcast scalars, which is all the strided-loop driver hands us
// after it merges dims. The f64 and integer paths are plain templates elsewhere.
#pragma once

#include <cstdint>
#include <string_view>

namespace kiln::ops::cpu {

enum class BinaryOp : uint8_t { add, sub, mul, div, pow, maximum, minimum };
enum class UnaryOp : uint8_t { neg, abs, exp, log, sqrt, rsqrt, tanh, sigmoid, relu, gelu, gelu_tanh, silu };
// Backward of a unary op: grad_in = grad_out * f'(...). `saved` is the op's input, except for
// exp, tanh and sigmoid, whose derivative is cheaper from the output.
enum class UnaryBackwardOp : uint8_t { relu, gelu, gelu_tanh, silu, tanh_from_out, sigmoid_from_out };

// One Adam/AdamW step's constants (see optim/adam.cpp for the formulas they come from).
struct AdamStep {
  float decay;      // AdamW: 1 - lr * wd; Adam: 1
  float l2;         // Adam: wd (added to the gradient); AdamW: 0
  float w1;         // 1 - beta1
  float b2, w2;     // beta2, 1 - beta2
  float step_size;  // lr / (1 - beta1^t)
  float bc2_sqrt;   // sqrt(1 - beta2^t)
  float eps;
};

struct FloatKernels {
  std::string_view isa;
  // o[i] = a[i*sa] op b[i*sb], sa and sb in {0, 1}
  void (*binary)(BinaryOp op, float* o, const float* a, int64_t sa, const float* b, int64_t sb, int64_t n);
  void (*unary)(UnaryOp op, float* o, const float* x, int64_t n);
  void (*unary_backward)(UnaryBackwardOp op, float* gin, const float* gout, const float* saved, int64_t n);
  void (*clamp)(float* o, const float* x, float lo, float hi, int64_t n);
  void (*axpy)(float* y, float alpha, const float* x, int64_t n);  // y += alpha * x
  void (*scale)(float* y, float alpha, int64_t n);                  // y *= alpha
  double (*sum)(const float* x, int64_t n);                          // fixed-order sum, f64 accumulate
  // One fused Adam/AdamW pass: reads p, g, m, v once and writes p, m, v.
  void (*adam)(float* p, const float* g, float* m, float* v, int64_t n, const AdamStep& s);
};

// The kernels for the best instruction set this CPU supports (KILN_ISA=portable|avx2|avx512
// in the environment forces a lower one, for testing the fallbacks).
const FloatKernels& float_kernels();
const FloatKernels& float_kernels_portable();
std::string_view simd_level();

// Whether this CPU can run the named build ("portable", "avx2", "avx512").
bool cpu_supports_isa(std::string_view isa);

// One of a kernel table's three per-ISA builds by name ("" = the level in use), or nullptr when
// this CPU cannot run it: the lookup every *_isa.cpp family (GEMM, conv, Winograd) shares.
template <typename Table>
const Table* pick_isa(std::string_view isa, const Table& portable, const Table& avx2, const Table& avx512) {
  if (isa.empty()) isa = simd_level();
  if (!cpu_supports_isa(isa)) return nullptr;
  if (isa == "portable") return &portable;
  if (isa == "avx2") return &avx2;
  if (isa == "avx512") return &avx512;
  return nullptr;
}

}  // namespace kiln::ops::cpu
