// Branch-free f32 math that GCC auto-vectorises (no libm calls in the loop body): exp, log, tanh,
// erf. Each is a range reduction plus a polynomial; selects are written as ternaries so they
// compile to blends. Accuracy (checked against libm over [-20, 20] in tests/ops): exp and log
// within 2 ulp, tanh and sigmoid within 3e-7 absolute, erf within 2e-7 absolute.
#pragma once

#include <cstdint>
#include <cstring>

namespace kiln::ops::cpu {

inline float vm_bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline int32_t vm_float_to_bits(float f) {
  int32_t i;
  std::memcpy(&i, &f, 4);
  return i;
}

// exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2/2; degree-6 polynomial for exp(r).
inline float vm_exp(float x) {
  x = x > 88.3762626647949f ? 88.3762626647949f : x;
  x = x < -87.3365478515625f ? -87.3365478515625f : x;  // keeps 2^n a normal float
  float n = __builtin_rintf(x * 1.44269504088896341f);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;  // ln2 split in two parts for an exact reduction
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * vm_bits_to_float((static_cast<int32_t>(n) + 127) << 23);
}

// log(x) for x > 0 (Cephes logf): x = m * 2^e with m in [sqrt(1/2), sqrt(2)).
inline float vm_log(float x) {
  int32_t bits = vm_float_to_bits(x);
  int32_t e = ((bits >> 23) & 0xff) - 126;
  float m = vm_bits_to_float((bits & 0x007fffff) | 0x3f000000);  // [0.5, 1)
  bool small = m < 0.707106781186547524f;
  e = small ? e - 1 : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  float fe = static_cast<float>(e);
  y += fe * -2.12194440e-4f;
  y += -0.5f * z;
  float r = m + y + fe * 0.693359375f;
  // log(0) = -inf, log(negative or NaN) = NaN, log(inf) = inf
  r = x == 0.0f ? -__builtin_inff() : r;
  r = x < 0.0f || x != x ? __builtin_nanf("") : r;
  return x == __builtin_inff() ? x : r;
}

// tanh: an odd polynomial near 0 (where 1 - 2/(e^2x + 1) would cancel), the exp form elsewhere.
inline float vm_tanh(float x) {
  float ax = x < 0 ? -x : x;
  float e = vm_exp(-2.0f * ax);
  float big = (1.0f - e) / (1.0f + e);
  float z = x * x;
  float small = -5.70498872745e-3f;
  small = small * z + 2.06390887954e-2f;
  small = small * z - 5.37397155531e-2f;
  small = small * z + 1.33314422036e-1f;
  small = small * z - 3.33332819422e-1f;
  small = small * z * ax + ax;
  float r = ax < 0.625f ? small : big;
  return x < 0 ? -r : r;
}

inline float vm_sigmoid(float x) { return 1.0f / (1.0f + vm_exp(-x)); }

// erf via Abramowitz & Stegun 7.1.26 refined: 1 - poly(t) * exp(-x^2), t = 1/(1 + p|x|).
inline float vm_erf(float x) {
  float ax = x < 0 ? -x : x;
  float t = 1.0f / (1.0f + 0.3275911f * ax);
  float y = 1.061405429f;
  y = y * t - 1.453152027f;
  y = y * t + 1.421413741f;
  y = y * t - 0.284496736f;
  y = y * t + 0.254829592f;
  y = 1.0f - y * t * vm_exp(-ax * ax);
  return x < 0 ? -y : y;
}

}  // namespace kiln::ops::cpu
