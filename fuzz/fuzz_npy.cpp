// libFuzzer target: arbitrary bytes as a .npy file. A kiln::Error is the expected answer to bad
// input; anything else (a crash, an ASan report, another exception, a decoded array that does not
// survive a re-encode) is a bug.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "kiln/io/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::Tensor t;
  try {
    t = kiln::io::parse_npy(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.npy");
  } catch (const kiln::Error&) {
    return 0;
  }
  // Whatever decodes (every npy dtype Kiln reads, it can write) must round-trip bit for bit.
  const kiln::Tensor back = kiln::io::parse_npy(kiln::io::encode_npy(t), "re-encoded");
  const size_t nbytes = static_cast<size_t>(t.numel()) * kiln::element_size(t.dtype());
  if (back.dtype() != t.dtype() || back.shape() != t.shape() ||
      (nbytes > 0 && std::memcmp(back.raw_data(), t.raw_data(), nbytes) != 0))
    std::abort();
  return 0;
}
