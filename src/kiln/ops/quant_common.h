// Internal helpers shared by the quant op files (quant_ops.cpp, quant_conv.cpp): dtype checks and
// dispatch over the 8-bit types, reading scales and zero points, broadcasting views, and the exact
// int32 GEMM. Not part of the public op API (quant_ops.h).
#pragma once

#include <limits>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::ops::quant {

inline bool is_q8(DType t) { return t == DType::u8 || t == DType::i8; }

// Calls fn.template operator()<Q>() with Q = uint8_t or int8_t.
template <typename Fn>
decltype(auto) dispatch_q8(DType t, Fn&& fn) {
  if (t == DType::u8) return fn.template operator()<uint8_t>();
  return fn.template operator()<int8_t>();
}

// Saturating store of an already-rounded value; NaN goes to the low end (no undefined cast).
template <typename Q, typename F>
inline Q saturate(F v) {
  constexpr F lo = static_cast<F>(std::numeric_limits<Q>::min()), hi = static_cast<F>(std::numeric_limits<Q>::max());
  return static_cast<Q>(v > hi ? hi : (v >= lo ? v : lo));
}

void check_q8(const Tensor& t, const char* op, const char* what);  // defined, u8 or i8
// An undefined zero point is fine (0); a defined one must have dtype `want`.
void check_zero_point(const Tensor& zp, DType want, const char* op, const char* what);
std::vector<float> scale_values(const Tensor& s, const char* op, const char* what);  // float tensor's values
std::vector<int32_t> zero_point_values(const Tensor& zp, size_t n);  // n zeros when undefined
double per_tensor_scale(const Tensor& s, const char* op, const char* what);  // one float value

// A view of t broadcast (numpy rules) to `target`, no autograd; throws naming op and what.
Tensor broadcast_to(const Tensor& t, const Shape& target, const char* op, const char* what);
Tensor to_i32(const Tensor& t);  // contiguous i32 copy
// to_i32(q) - to_i32(zp_view) elementwise (zp_view has q's shape, or is undefined: no shift).
Tensor shifted_i32(const Tensor& q, const Tensor& zp_view);

// c (M, N) = a (M, K) @ b (K, N), row-major, int32 accumulation wrapping modulo 2^32.
void gemm_i32(const int32_t* a, const int32_t* b, int32_t* c, int64_t M, int64_t K, int64_t N);

// Element offsets of each index of the first `nbatch` dims of `view` (row-major order).
std::vector<int64_t> batch_offsets(const Tensor& view, size_t nbatch);

}  // namespace kiln::ops::quant
