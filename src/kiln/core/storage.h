// A ref-counted, 64-byte aligned block of bytes on one device, shared by every view of it (CPU
// blocks come from the caching allocator in allocator.h).
// The version counter lives here because views share their base's data: an in-place write
// through any view must invalidate tensors that autograd saved from any other view.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "kiln/core/device.h"

namespace kiln {

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  // False when the bytes belong to someone else (a graph executor's arena, core/placement.h).
  bool owns_data() const { return owned_; }
  Device device() const { return device_; }

  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  bool owned_ = true;
  Device device_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace kiln
