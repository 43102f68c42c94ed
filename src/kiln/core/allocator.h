// The caching allocator behind CPU tensor storage: freed blocks are kept in per-size-class free
// lists and handed out again, so a training step that repeats the same shapes stops calling the
// system allocator (and stops page-faulting fresh memory) after its first iteration.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <type_traits>
#include <utility>

namespace kiln {

// Every block the allocator returns is aligned to this (a cache line, one AVX-512 register).
inline constexpr size_t kStorageAlignment = 64;

struct AllocatorStats {
  size_t in_use_bytes = 0;       // capacity of the blocks handed out and not yet freed
  size_t cached_bytes = 0;       // capacity of the blocks waiting in the free lists
  size_t peak_in_use_bytes = 0;  // the highest in_use_bytes seen (reset_peak() restarts it)
  uint64_t allocations = 0;      // calls to allocate()
  uint64_t cache_hits = 0;       // allocations served from a free list
  uint64_t system_allocs = 0;    // blocks obtained from the system
  uint64_t system_frees = 0;     // blocks given back to the system
};

struct AllocatorOptions {
  bool caching = true;                      // false: every call goes straight to the system
  size_t cache_limit_bytes = size_t{1} << 30;  // frees beyond this many cached bytes go to the system
};

// Size classes: up to 4 KiB in steps of 64 bytes; above that each power-of-two range
// (2^k, 2^(k+1)] is split into 4 classes, so a block is at most 25% larger than asked for.
// Requests above kMaxCachedBytes skip the cache (rare, and caching them could pin much memory).
class CachingAllocator {
 public:
  static constexpr size_t kSmallStep = 64;
  static constexpr size_t kSmallLimit = 4096;
  static constexpr size_t kMaxCachedBytes = size_t{256} << 20;
  static constexpr int kNumClasses = 128;  // 64 small classes + 4 per power of two in (4 KiB, 256 MiB]

  explicit CachingAllocator(AllocatorOptions options = {});
  ~CachingAllocator();  // gives every cached block back; blocks still in use must not outlive it
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A 64-byte aligned block of at least nbytes (nbytes == 0 is valid and gives a distinct block).
  // Throws std::bad_alloc when the system has no memory, even after emptying the cache.
  void* allocate(size_t nbytes);
  // nbytes must be the size passed to allocate() for this pointer.
  void deallocate(void* ptr, size_t nbytes);

  // Gives every cached block back to the system; returns the number of bytes released.
  size_t empty_cache();
  AllocatorStats stats() const;
  void reset_peak();
  bool caching() const { return options_.caching; }
  size_t cache_limit_bytes() const { return options_.cache_limit_bytes; }

  // The capacity a caching allocator reserves for a request of nbytes (its size class, or nbytes
  // rounded up to 64 bytes above kMaxCachedBytes). A non-caching one reserves nbytes rounded to 64.
  static size_t block_size(size_t nbytes);
  // The free list a request of nbytes maps to, or -1 above kMaxCachedBytes.
  static int size_class(size_t nbytes);

 private:
  struct FreeBlock {
    FreeBlock* next;
  };
  static size_t reserved_bytes(size_t nbytes, int size_class);
  void* system_allocate(size_t bytes);  // bytes is already a multiple of the alignment
  void system_free(void* ptr);
  size_t release_all_locked();

  AllocatorOptions options_;
  mutable std::mutex mutex_;
  // Intrusive LIFO lists: the link lives in the freed block itself, so caching a block costs no
  // bookkeeping allocation, and the most recently freed (cache-warm) block is reused first.
  FreeBlock* free_lists_[kNumClasses] = {};
  AllocatorStats stats_;
};

// The process-wide allocator for CPU tensor storage. Configured once, on first use, from:
//   KILN_ALLOCATOR=system        bypass the cache (also forced in AddressSanitizer builds, where
//                                cached blocks would hide use-after-free of tensor memory)
//   KILN_ALLOCATOR_CACHE_MB=N    cap on cached bytes (default: 1024 MB or a quarter of RAM,
//                                whichever is smaller; 0 caches nothing)
// Never destroyed, so tensors that are freed during static destruction stay safe.
CachingAllocator& cpu_allocator();

AllocatorStats allocator_stats();
// Gives the cached (free) tensor blocks back to the system; returns the bytes released.
size_t empty_cache();

// Uninitialised, 64-byte aligned scratch memory for kernels, from the same cache as tensor storage:
// use it instead of a std::vector temporary inside an op (which would call malloc and zero-fill
// the buffer on every call).   ScratchBuffer<float> cols(K * N);  float* c = cols.data();
template <typename T>
class ScratchBuffer {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>);

 public:
  ScratchBuffer() = default;
  explicit ScratchBuffer(size_t count)
      : data_(static_cast<T*>(cpu_allocator().allocate(count * sizeof(T)))), count_(count) {}
  ~ScratchBuffer() { reset(); }
  ScratchBuffer(ScratchBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  ScratchBuffer& operator=(ScratchBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      data_ = std::exchange(o.data_, nullptr);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;

  T* data() const { return data_; }
  size_t size() const { return count_; }
  T& operator[](size_t i) const { return data_[i]; }
  void reset() {
    if (data_) cpu_allocator().deallocate(data_, count_ * sizeof(T));
    data_ = nullptr;
    count_ = 0;
  }

 private:
  T* data_ = nullptr;
  size_t count_ = 0;
};

}  // namespace kiln
