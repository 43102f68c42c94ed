// TensorProto decoding and encoding. The decoder trusts nothing in the message: the element type,
// every dim, the data's size and (for the typed fields) every value's range are checked before a
// tensor is allocated, so a hostile file costs at most its own size in memory.
#include "kiln/io/onnx/tensor_proto.h"

#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kiln/io/atomic_file.h"

namespace kiln::io {

static_assert(std::endian::native == std::endian::little, "ONNX raw_data is little-endian");

namespace {

using ::onnx::TensorProto;

constexpr size_t kMaxDims = 64;

// TensorProto.DataType, by value. The names after BFLOAT16 are newer than the onnx.proto that
// Kiln compiles against (1.12), but files written by newer exporters carry them.
constexpr std::array<std::string_view, 24> kOnnxTypeNames = {
    "UNDEFINED", "FLOAT",         "UINT8",          "INT8",       "UINT16",         "INT16",
    "INT32",     "INT64",         "STRING",         "BOOL",       "FLOAT16",        "DOUBLE",
    "UINT32",    "UINT64",        "COMPLEX64",      "COMPLEX128", "BFLOAT16",       "FLOAT8E4M3FN",
    "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "UINT4",    "INT4",           "FLOAT4E2M1"};

std::string describe(std::string_view context, const std::string& name) {
  std::string where(context);
  if (!where.empty()) where += ": ";
  where += name.empty() ? std::string("tensor (unnamed)") : detail::concat("tensor \"", name, "\"");
  return where;
}

// The typed fields holding data, by name, for "which field is set" checks and messages.
struct TypedField {
  const char* name;
  int size;
};
std::array<TypedField, 6> typed_fields(const TensorProto& p) {
  return {{{"float_data", p.float_data_size()},
           {"int32_data", p.int32_data_size()},
           {"string_data", p.string_data_size()},
           {"int64_data", p.int64_data_size()},
           {"double_data", p.double_data_size()},
           {"uint64_data", p.uint64_data_size()}}};
}

// The typed field ONNX uses for each Kiln dtype (onnx.proto, comments on each field).
const char* typed_field_for(DType t) {
  switch (t) {
    case DType::f32: return "float_data";
    case DType::f64: return "double_data";
    case DType::i64: return "int64_data";
    default: return "int32_data";  // int32, int8, uint8, bool, float16 and bfloat16 bit patterns
  }
}

// Narrows int32_data values to the element type, rejecting values that do not fit. 16-bit float
// bit patterns are accepted sign-extended too (what numpy's uint16 view of an int32 would read).
template <typename T>
void decode_int32_field(const TensorProto& p, DType dtype, T* out, const std::string& where) {
  int64_t lo = 0, hi = 0;
  switch (dtype) {
    case DType::i8: lo = -128, hi = 127; break;
    case DType::u8: lo = 0, hi = 255; break;
    case DType::b8: lo = 0, hi = 1; break;
    case DType::f16:
    case DType::bf16: lo = -32768, hi = 65535; break;
    default: lo = std::numeric_limits<int32_t>::min(), hi = std::numeric_limits<int32_t>::max(); break;
  }
  for (int i = 0; i < p.int32_data_size(); ++i) {
    const int32_t v = p.int32_data(i);
    KILN_CHECK(v >= lo && v <= hi, where, ": int32_data[", i, "] = ", v, " does not fit element type ",
               onnx_type_name(onnx_elem_type(dtype)), " (range [", lo, ", ", hi, "])");
    if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
      out[i].bits = static_cast<uint16_t>(static_cast<uint32_t>(v) & 0xffffu);
    else
      out[i] = static_cast<T>(v);
  }
}

}  // namespace

std::string_view onnx_type_name(int32_t elem_type) {
  if (elem_type < 0 || static_cast<size_t>(elem_type) >= kOnnxTypeNames.size()) return "unknown";
  return kOnnxTypeNames[static_cast<size_t>(elem_type)];
}

DType dtype_from_onnx(int32_t elem_type, std::string_view context) {
  switch (elem_type) {
    case TensorProto::FLOAT: return DType::f32;
    case TensorProto::DOUBLE: return DType::f64;
    case TensorProto::FLOAT16: return DType::f16;
    case TensorProto::BFLOAT16: return DType::bf16;
    case TensorProto::INT8: return DType::i8;
    case TensorProto::UINT8: return DType::u8;
    case TensorProto::INT32: return DType::i32;
    case TensorProto::INT64: return DType::i64;
    case TensorProto::BOOL: return DType::b8;
    default: break;
  }
  KILN_CHECK(elem_type > 0, context, ": element type ", onnx_type_name(elem_type), " (", elem_type,
             ") is not a valid ONNX data type");
  throw NotImplementedError(detail::concat(
      context, ": ONNX element type ", onnx_type_name(elem_type), " (", elem_type,
      ") is not supported by Kiln (supported: FLOAT DOUBLE FLOAT16 BFLOAT16 INT8 UINT8 INT32 INT64 BOOL)"));
}

int32_t onnx_elem_type(DType t) {
  switch (t) {
    case DType::f32: return TensorProto::FLOAT;
    case DType::f64: return TensorProto::DOUBLE;
    case DType::f16: return TensorProto::FLOAT16;
    case DType::bf16: return TensorProto::BFLOAT16;
    case DType::i8: return TensorProto::INT8;
    case DType::u8: return TensorProto::UINT8;
    case DType::i32: return TensorProto::INT32;
    case DType::i64: return TensorProto::INT64;
    case DType::b8: return TensorProto::BOOL;
  }
  throw InternalError("onnx_elem_type: bad dtype");
}

Tensor tensor_from_proto(const TensorProto& p, std::string_view context) {
  const std::string where = describe(context, p.name());
  if (p.data_location() == TensorProto::EXTERNAL) {
    std::string location;
    for (const auto& kv : p.external_data())
      if (kv.key() == "location") location = kv.value();
    throw NotImplementedError(detail::concat(
        where, ": data stored in an external file (location \"", location, "\") is not supported yet",
        "\nhelp: re-save the model with its data inside: onnx.save(onnx.load(path), out, "
        "save_as_external_data=False)"));
  }
  if (p.has_segment())
    throw NotImplementedError(detail::concat(where, ": segmented tensors (TensorProto.segment) are not supported"));
  const DType dtype = dtype_from_onnx(p.data_type(), where);
  const std::string_view type_name = onnx_type_name(p.data_type());

  // numel, and the product of the non-zero dims, which bounds every stride: both must fit int64.
  KILN_CHECK(static_cast<size_t>(p.dims_size()) <= kMaxDims, where, ": ", p.dims_size(),
             " dimensions (Kiln supports at most ", kMaxDims, ")");
  Shape shape;
  uint64_t numel = 1, nonzero = 1;
  for (int i = 0; i < p.dims_size(); ++i) {
    const int64_t d = p.dims(i);
    shape.push_back(d);
    KILN_CHECK(d >= 0, where, ": dims[", i, "] = ", d, " is negative");
    numel *= static_cast<uint64_t>(d);
    if (d != 0)
      KILN_CHECK(!__builtin_mul_overflow(nonzero, static_cast<uint64_t>(d), &nonzero) &&
                     nonzero <= uint64_t{INT64_MAX},
                 where, ": dims ", shape_str(Shape(p.dims().begin(), p.dims().end())),
                 " hold more than 2^63 elements");
  }
  const size_t esize = element_size(dtype);

  const auto fields = typed_fields(p);
  if (p.has_raw_data()) {
    for (const TypedField& f : fields)
      KILN_CHECK(f.size == 0, where, ": holds both raw_data and ", f.name, " (exactly one may carry the data)");
    const std::string& raw = p.raw_data();
    uint64_t nbytes = 0;
    const bool overflow = __builtin_mul_overflow(numel, uint64_t{esize}, &nbytes);
    KILN_CHECK(!overflow && raw.size() == nbytes, where, ": raw_data holds ", raw.size(), " bytes but shape ",
               shape_str(shape), " of ", type_name, " needs ",
               overflow ? std::string("more than 2^64") : std::to_string(nbytes));
    if (dtype == DType::b8)  // any byte but 0 or 1 is not a valid C++ bool
      for (size_t i = 0; i < raw.size(); ++i)
        KILN_CHECK(static_cast<unsigned char>(raw[i]) <= 1, where, ": BOOL raw_data holds byte ",
                   int{static_cast<unsigned char>(raw[i])}, " at element ", i, " (must be 0 or 1)");
    Tensor t = Tensor::empty(shape, dtype);
    if (nbytes > 0) std::memcpy(t.raw_data(), raw.data(), nbytes);
    return t;
  }

  const std::string_view expected_field = typed_field_for(dtype);
  int count = 0;
  for (const TypedField& f : fields) {
    if (f.name == expected_field)
      count = f.size;
    else
      KILN_CHECK(f.size == 0, where, ": element type ", type_name, " cannot be stored in ", f.name,
                 " (ONNX uses raw_data or ", expected_field, ")");
  }
  KILN_CHECK(static_cast<uint64_t>(count) == numel, where, ": ",
             count == 0 ? std::string("has no data (neither raw_data nor ") + std::string(expected_field) + ")"
                        : detail::concat(expected_field, " holds ", count, " values"),
             " but shape ", shape_str(shape), " needs ", numel);
  Tensor t = Tensor::empty(shape, dtype);
  if (numel == 0) return t;
  switch (dtype) {
    case DType::f32: std::memcpy(t.raw_data(), p.float_data().data(), numel * esize); break;
    case DType::f64: std::memcpy(t.raw_data(), p.double_data().data(), numel * esize); break;
    case DType::i64: std::memcpy(t.raw_data(), p.int64_data().data(), numel * esize); break;
    default:
      dispatch_all(dtype, [&]<typename T>() { decode_int32_field(p, dtype, static_cast<T*>(t.raw_data()), where); });
  }
  return t;
}

TensorProto tensor_to_proto(const Tensor& t, const std::string& name) {
  KILN_CHECK(t.defined(), "tensor_to_proto: tensor \"", name, "\" is undefined");
  KILN_CHECK(t.device() == Device::cpu(), "tensor_to_proto: tensor \"", name, "\" is not on the CPU");
  const Tensor c = contiguous_raw(t);
  TensorProto p;
  p.set_name(name);
  p.set_data_type(onnx_elem_type(c.dtype()));
  for (int64_t d : c.shape()) p.add_dims(d);
  const size_t nbytes = static_cast<size_t>(c.numel()) * element_size(c.dtype());
  p.set_raw_data(nbytes > 0 ? std::string(static_cast<const char*>(c.raw_data()), nbytes) : std::string());
  return p;
}

Tensor parse_tensor_pb(std::string_view bytes, std::string_view source) {
  TensorProto p;
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw IoError(detail::concat(source, ": not a valid ONNX TensorProto (", bytes.size(),
                                 " bytes: protobuf messages are limited to 2 GiB)"));
  if (!p.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    throw IoError(detail::concat(source, ": not a valid ONNX TensorProto (protobuf parse of ", bytes.size(),
                                 " bytes failed)"));
  return tensor_from_proto(p, source);
}

Tensor read_tensor_pb(const std::string& path) { return parse_tensor_pb(read_file(path), path); }

std::vector<Tensor> sequence_from_proto(const ::onnx::SequenceProto& p, std::string_view context) {
  if (p.elem_type() != ::onnx::SequenceProto::TENSOR && !(p.elem_type() == 0 && p.tensor_values_size() == 0))
    throw NotImplementedError(detail::concat(context, ": a sequence of element type ", p.elem_type(),
                                             " (Kiln reads sequences of tensors only)"));
  std::vector<Tensor> out;
  for (int i = 0; i < p.tensor_values_size(); ++i)
    out.push_back(tensor_from_proto(p.tensor_values(i), detail::concat(context, ": element ", i)));
  return out;
}

ProtoValue optional_from_proto(const ::onnx::OptionalProto& p, std::string_view context) {
  ProtoValue v;
  if (p.has_tensor_value()) {
    v.kind = ProtoValue::Kind::tensor;
    v.tensor = tensor_from_proto(p.tensor_value(), context);
  } else if (p.has_sequence_value()) {
    v.kind = ProtoValue::Kind::sequence;
    v.sequence = sequence_from_proto(p.sequence_value(), context);
  } else if (p.has_sparse_tensor_value() || p.has_map_value() || p.has_optional_value()) {
    throw NotImplementedError(detail::concat(context, ": an optional of a sparse tensor, map or optional"));
  }
  return v;
}

namespace {

template <typename Proto>
Proto parse_pb(const std::string& path, std::string_view what) {
  std::string bytes = read_file(path);
  Proto p;
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !p.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    throw IoError(detail::concat(path, ": not a valid ONNX ", what, " (protobuf parse of ", bytes.size(), " bytes failed)"));
  return p;
}

}  // namespace

std::vector<Tensor> read_sequence_pb(const std::string& path) {
  return sequence_from_proto(parse_pb<::onnx::SequenceProto>(path, "SequenceProto"), path);
}

ProtoValue read_optional_pb(const std::string& path) {
  return optional_from_proto(parse_pb<::onnx::OptionalProto>(path, "OptionalProto"), path);
}

void write_tensor_pb(const std::string& path, const Tensor& t, const std::string& name) {
  const TensorProto p = tensor_to_proto(t, name);
  std::string bytes;
  if (!p.SerializeToString(&bytes))
    throw IoError(detail::concat(path, ": cannot serialize tensor \"", name, "\" as a TensorProto (",
                                 p.ByteSizeLong(), " bytes; protobuf messages are limited to 2 GiB)"));
  write_file_atomic(path, bytes);
}

}  // namespace kiln::io
