// libFuzzer target: arbitrary bytes as a serialized ONNX SequenceProto, then as an OptionalProto
// (what `kiln run` reads for sequence and optional inputs). A kiln::Error is the expected answer to
// bad input; anything else (a crash, an ASan report, another exception, an element that does not
// survive a re-encode) is a bug.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <onnx/onnx-data_pb.h>

#include "kiln/io/onnx/tensor_proto.h"

namespace {

// Every decoded element must encode and decode again to the same dtype, shape and bytes.
void check_round_trip(const std::vector<kiln::Tensor>& elems) {
  for (const kiln::Tensor& t : elems) {
    const kiln::Tensor back = kiln::io::tensor_from_proto(kiln::io::tensor_to_proto(t, "again"), "re-encoded");
    const size_t nbytes = static_cast<size_t>(t.numel()) * kiln::element_size(t.dtype());
    if (back.dtype() != t.dtype() || back.shape() != t.shape() ||
        (nbytes > 0 && std::memcmp(back.raw_data(), t.raw_data(), nbytes) != 0))
      std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int n = static_cast<int>(size);
  ::onnx::SequenceProto seq;
  if (seq.ParseFromArray(data, n)) {
    try {
      check_round_trip(kiln::io::sequence_from_proto(seq, "fuzz.pb"));
    } catch (const kiln::Error&) {
    }
  }
  ::onnx::OptionalProto opt;
  if (opt.ParseFromArray(data, n)) {
    try {
      kiln::io::ProtoValue v = kiln::io::optional_from_proto(opt, "fuzz.pb");
      if (v.kind == kiln::io::ProtoValue::Kind::tensor) check_round_trip({v.tensor});
      if (v.kind == kiln::io::ProtoValue::Kind::sequence) check_round_trip(v.sequence);
    } catch (const kiln::Error&) {
    }
  }
  return 0;
}
