#include "kiln/core/storage.h"

#include "kiln/core/allocator.h"
#include "kiln/core/error.h"
#include "kiln/core/placement.h"

namespace kiln {

// CPU memory comes from the caching allocator (allocator.h): blocks freed by one training step are
// reused by the next, without system calls or fresh page faults.
Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.type != DeviceType::cpu)
    throw BackendError("storage: device " + device.str() + " is not available in this build");
  if (void* planned = take_placement(nbytes)) {
    data_ = planned;
    owned_ = false;
    return;
  }
  data_ = cpu_allocator().allocate(nbytes);
}

Storage::~Storage() {
  if (owned_) cpu_allocator().deallocate(data_, nbytes_);
}

}  // namespace kiln
