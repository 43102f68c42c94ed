#include "kiln/core/storage.h"

#include <cstdlib>
#include <new>

#include "kiln/core/error.h"

namespace kiln {

namespace {
constexpr size_t kAlignment = 64;  // one cache line, and the width of an AVX-512 register
}

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.type != DeviceType::cpu)
    throw BackendError("storage: device " + device.str() + " is not available in this build");
  size_t rounded = (nbytes + kAlignment - 1) / kAlignment * kAlignment;
  data_ = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
  if (!data_) throw std::bad_alloc();
}

Storage::~Storage() { std::free(data_); }

}  // namespace kiln
