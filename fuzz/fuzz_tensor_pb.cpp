// libFuzzer target: arbitrary bytes as a serialized ONNX TensorProto. A kiln::Error is the
// expected answer to bad input; anything else (a crash, an ASan report, another exception, a
// decoded tensor that does not survive a re-encode) is a bug.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "kiln/io/onnx/tensor_proto.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::Tensor t;
  try {
    t = kiln::io::parse_tensor_pb(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.pb");
  } catch (const kiln::Error&) {
    return 0;
  }
  // Whatever decodes must encode and decode again to the same dtype, shape and bytes.
  const kiln::Tensor back = kiln::io::tensor_from_proto(kiln::io::tensor_to_proto(t, "again"), "re-encoded");
  const size_t nbytes = static_cast<size_t>(t.numel()) * kiln::element_size(t.dtype());
  if (back.dtype() != t.dtype() || back.shape() != t.shape() ||
      (nbytes > 0 && std::memcmp(back.raw_data(), t.raw_data(), nbytes) != 0))
    std::abort();
  return 0;
}
