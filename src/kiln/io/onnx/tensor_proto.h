// ONNX TensorProto <-> Kiln Tensor: element-type mapping, decoding of raw_data and of the typed
// fields (float_data, int32_data, ...), encoding as raw_data, and single-tensor .pb files (the
// inputs and outputs of the ONNX backend tests, test_data_set_*/input_0.pb).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <onnx/onnx-data_pb.h>
#include <onnx/onnx_pb.h>

#include "kiln/core/tensor.h"

namespace kiln::io {

// ONNX element types (TensorProto.DataType) <-> Kiln dtypes. Types Kiln lacks (STRING, UINT16,
// COMPLEX64, FLOAT8*, ...) throw NotImplementedError naming the ONNX type and `context`;
// UNDEFINED or negative values throw ValueError.
DType dtype_from_onnx(int32_t elem_type, std::string_view context);
int32_t onnx_elem_type(DType t);
std::string_view onnx_type_name(int32_t elem_type);  // "FLOAT", "UINT16", ...; "unknown" otherwise

// Decodes one TensorProto (an initializer, a Constant's value, a test input). `context` names
// where it came from ("model.onnx: initializer"); errors also name the tensor. Checks the dims
// (non-negative, product fits int64), that the data holds exactly one value per element, and
// that typed-field values fit the element type, before allocating anything.
Tensor tensor_from_proto(const ::onnx::TensorProto& p, std::string_view context);

// Encodes a tensor as dims + data_type + raw_data (little-endian, row-major).
::onnx::TensorProto tensor_to_proto(const Tensor& t, const std::string& name);

// A serialized TensorProto: from a file, from bytes in memory (`source` names them in errors),
// and written atomically (temporary file, fsync, rename).
Tensor read_tensor_pb(const std::string& path);
Tensor parse_tensor_pb(std::string_view bytes, std::string_view source);
void write_tensor_pb(const std::string& path, const Tensor& t, const std::string& name);

// Sequences and optionals as the ONNX backend tests store them (onnx-data.proto: SequenceProto of
// tensors, OptionalProto of a tensor or such a sequence). Nested sequences, maps and sparse
// tensors throw NotImplementedError naming `context`/the file.
struct ProtoValue {
  enum class Kind { none, tensor, sequence };
  Kind kind = Kind::none;  // none: an empty optional
  Tensor tensor;
  std::vector<Tensor> sequence;
};
std::vector<Tensor> sequence_from_proto(const ::onnx::SequenceProto& p, std::string_view context);
ProtoValue optional_from_proto(const ::onnx::OptionalProto& p, std::string_view context);
std::vector<Tensor> read_sequence_pb(const std::string& path);
ProtoValue read_optional_pb(const std::string& path);

}  // namespace kiln::io
