// Element types, their sizes and names, type promotion, and dispatch from a runtime DType to a
// compile-time C++ type. Compute kernels exist for f32/f64 (float math) and the integer types;
// f16/bf16/i8 are storage types that convert to f32 for compute.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kiln/core/error.h"
#include "kiln/core/half.h"

namespace kiln {

enum class DType : uint8_t { f32, f64, f16, bf16, i8, u8, i32, i64, b8 };

size_t element_size(DType t);
std::string_view dtype_name(DType t);          // "f32", "i64", "bool", ...
std::string_view safetensors_name(DType t);    // "F32", "I64", "BOOL", ...
DType dtype_from_safetensors(std::string_view name);  // throws on unknown names
DType dtype_from_name(std::string_view name);  // accepts dtype_name() spellings

inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::f16 || t == DType::bf16;
}
inline bool is_integral(DType t) { return !is_floating(t) && t != DType::b8; }

// Promotion as in NumPy/PyTorch for tensor-tensor ops: bool < integers < floats; a float wins
// over any integer; among floats the wider one wins; f16/bf16 mixed promote to f32.
DType promote_types(DType a, DType b);

template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::f32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::f64; };
template <> struct DTypeOf<Half> { static constexpr DType value = DType::f16; };
template <> struct DTypeOf<BFloat16> { static constexpr DType value = DType::bf16; };
template <> struct DTypeOf<int8_t> { static constexpr DType value = DType::i8; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::i32; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::i64; };
template <> struct DTypeOf<bool> { static constexpr DType value = DType::b8; };

// Calls fn.template operator()<T>() for the C++ type of `t`, restricted to the float compute
// types. `op` names the caller in the error for an unsupported dtype.
template <typename Fn>
decltype(auto) dispatch_float(DType t, std::string_view op, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn.template operator()<float>();
    case DType::f64: return fn.template operator()<double>();
    default:
      throw TypeError(detail::concat(op, ": not implemented for dtype ", dtype_name(t),
                                     " (float ops run in f32 or f64)\nhelp: convert with .to(DType::f32)"));
  }
}

// Every type that has arithmetic kernels: floats and the integer types (bool excluded).
template <typename Fn>
decltype(auto) dispatch_numeric(DType t, std::string_view op, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn.template operator()<float>();
    case DType::f64: return fn.template operator()<double>();
    case DType::i32: return fn.template operator()<int32_t>();
    case DType::i64: return fn.template operator()<int64_t>();
    case DType::u8: return fn.template operator()<uint8_t>();
    case DType::i8: return fn.template operator()<int8_t>();
    default:
      throw TypeError(detail::concat(op, ": not implemented for dtype ", dtype_name(t)));
  }
}

// Every dtype, used by copies, conversions and indexing ops that only move bytes or values.
template <typename Fn>
decltype(auto) dispatch_all(DType t, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn.template operator()<float>();
    case DType::f64: return fn.template operator()<double>();
    case DType::f16: return fn.template operator()<Half>();
    case DType::bf16: return fn.template operator()<BFloat16>();
    case DType::i8: return fn.template operator()<int8_t>();
    case DType::u8: return fn.template operator()<uint8_t>();
    case DType::i32: return fn.template operator()<int32_t>();
    case DType::i64: return fn.template operator()<int64_t>();
    case DType::b8: return fn.template operator()<bool>();
  }
  throw InternalError("dispatch_all: bad dtype");
}

// Value conversions that understand the 16-bit storage types.
template <typename T> inline double to_double(T v) { return static_cast<double>(v); }
template <> inline double to_double(Half v) { return from_f16(v); }
template <> inline double to_double(BFloat16 v) { return from_bf16(v); }
template <typename T> inline T from_double(double v) { return static_cast<T>(v); }
template <> inline Half from_double(double v) { return to_f16(static_cast<float>(v)); }
template <> inline BFloat16 from_double(double v) { return to_bf16(static_cast<float>(v)); }

}  // namespace kiln
