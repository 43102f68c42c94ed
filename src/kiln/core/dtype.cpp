#include "kiln/core/dtype.h"

#include <array>

namespace kiln {

namespace {
struct DTypeInfo {
  DType type;
  size_t size;
  std::string_view name;
  std::string_view st_name;
};
constexpr std::array<DTypeInfo, 9> kDTypes = {{
    {DType::f32, 4, "f32", "F32"},
    {DType::f64, 8, "f64", "F64"},
    {DType::f16, 2, "f16", "F16"},
    {DType::bf16, 2, "bf16", "BF16"},
    {DType::i8, 1, "i8", "I8"},
    {DType::u8, 1, "u8", "U8"},
    {DType::i32, 4, "i32", "I32"},
    {DType::i64, 8, "i64", "I64"},
    {DType::b8, 1, "bool", "BOOL"},
}};
const DTypeInfo& info(DType t) { return kDTypes[static_cast<size_t>(t)]; }

// Rank used for promotion: bool < u8 < i8 < i32 < i64 < bf16/f16 < f32 < f64.
int rank(DType t) {
  switch (t) {
    case DType::b8: return 0;
    case DType::u8: return 1;
    case DType::i8: return 2;
    case DType::i32: return 3;
    case DType::i64: return 4;
    case DType::f16:
    case DType::bf16: return 5;
    case DType::f32: return 6;
    case DType::f64: return 7;
  }
  return 0;
}
}  // namespace

size_t element_size(DType t) { return info(t).size; }
std::string_view dtype_name(DType t) { return info(t).name; }
std::string_view safetensors_name(DType t) { return info(t).st_name; }

DType dtype_from_safetensors(std::string_view name) {
  for (const auto& d : kDTypes)
    if (d.st_name == name) return d.type;
  throw TypeError(detail::concat("unknown safetensors dtype '", name, "'"));
}

DType dtype_from_name(std::string_view name) {
  for (const auto& d : kDTypes)
    if (d.name == name || d.st_name == name) return d.type;
  if (name == "float32" || name == "float") return DType::f32;
  if (name == "float64" || name == "double") return DType::f64;
  if (name == "int64" || name == "long") return DType::i64;
  if (name == "int32" || name == "int") return DType::i32;
  throw TypeError(detail::concat("unknown dtype '", name, "'"));
}

DType promote_types(DType a, DType b) {
  if (a == b) return a;
  if ((a == DType::f16 && b == DType::bf16) || (a == DType::bf16 && b == DType::f16)) return DType::f32;
  // u8 with i8 needs a wider signed type.
  if ((a == DType::u8 && b == DType::i8) || (a == DType::i8 && b == DType::u8)) return DType::i32;
  return rank(a) >= rank(b) ? a : b;
}

}  // namespace kiln
