// The caching allocator for CPU tensor storage (see allocator.h for the size classes and knobs).
#include "kiln/core/allocator.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <new>
#include <string>

#include "kiln/core/error.h"

#if defined(__SANITIZE_ADDRESS__)
#define KILN_ALLOCATOR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KILN_ALLOCATOR_ASAN 1
#endif
#endif

namespace kiln {

namespace {

constexpr size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

constexpr int kSmallClasses = static_cast<int>(CachingAllocator::kSmallLimit / CachingAllocator::kSmallStep);
constexpr int kSmallLog2 = 12;  // log2(kSmallLimit)
static_assert(size_t{1} << kSmallLog2 == CachingAllocator::kSmallLimit);

// The capacity of the blocks in free list `index`.
constexpr size_t class_bytes(int index) {
  if (index < kSmallClasses) return static_cast<size_t>(index + 1) * CachingAllocator::kSmallStep;
  int r = index - kSmallClasses;
  int k = kSmallLog2 + r / 4;
  return (size_t{1} << k) + static_cast<size_t>(r % 4 + 1) * (size_t{1} << (k - 2));
}
static_assert(class_bytes(CachingAllocator::kNumClasses - 1) == CachingAllocator::kMaxCachedBytes);

size_t default_cache_limit() {
  size_t limit = size_t{1024} << 20;
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) limit = std::min(limit, static_cast<size_t>(pages) * static_cast<size_t>(page) / 4);
  return limit;
}

AllocatorOptions options_from_env() {
  AllocatorOptions o;
  o.cache_limit_bytes = default_cache_limit();
  if (const char* mode = std::getenv("KILN_ALLOCATOR"); mode && *mode) {
    std::string m = mode;
    KILN_CHECK(m == "system" || m == "caching", "KILN_ALLOCATOR: unknown value '", m,
               "'\nhelp: use 'caching' (the default) or 'system'");
    o.caching = m == "caching";
  }
  if (const char* mb = std::getenv("KILN_ALLOCATOR_CACHE_MB"); mb && *mb) {
    char* end = nullptr;
    unsigned long long v = std::strtoull(mb, &end, 10);
    KILN_CHECK(*end == '\0' && mb[0] != '-', "KILN_ALLOCATOR_CACHE_MB: '", mb,
               "' is not a number of megabytes\nhelp: e.g. KILN_ALLOCATOR_CACHE_MB=2048");
    o.cache_limit_bytes = static_cast<size_t>(v) << 20;
  }
#ifdef KILN_ALLOCATOR_ASAN
  o.caching = false;  // let AddressSanitizer see every use-after-free of tensor memory
#endif
  return o;
}

}  // namespace

int CachingAllocator::size_class(size_t nbytes) {
  if (nbytes <= kSmallLimit) return nbytes == 0 ? 0 : static_cast<int>((nbytes - 1) / kSmallStep);
  if (nbytes > kMaxCachedBytes) return -1;
  // 2^k < nbytes <= 2^(k+1); the range is cut into 4 classes of 2^(k-2) bytes each.
  int k = std::bit_width(nbytes - 1) - 1;
  size_t step = size_t{1} << (k - 2);
  size_t j = (nbytes - (size_t{1} << k) + step - 1) / step;  // 1..4
  return kSmallClasses + (k - kSmallLog2) * 4 + static_cast<int>(j - 1);
}

// The capacity reserved for a request of nbytes that maps to free list c (-1: none).
size_t CachingAllocator::reserved_bytes(size_t nbytes, int c) {
  return c >= 0 ? class_bytes(c) : round_up(std::max<size_t>(nbytes, 1), kStorageAlignment);
}

size_t CachingAllocator::block_size(size_t nbytes) { return reserved_bytes(nbytes, size_class(nbytes)); }

CachingAllocator::CachingAllocator(AllocatorOptions options) : options_(options) {}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_all_locked();
}

void* CachingAllocator::system_allocate(size_t bytes) {
  void* p = std::aligned_alloc(kStorageAlignment, bytes);
  if (!p) {
    empty_cache();  // the memory may be sitting in our own free lists
    p = std::aligned_alloc(kStorageAlignment, bytes);
    if (!p) throw std::bad_alloc();
  }
  return p;
}

void CachingAllocator::system_free(void* ptr) { std::free(ptr); }

void* CachingAllocator::allocate(size_t nbytes) {
  int c = options_.caching ? size_class(nbytes) : -1;
  size_t bytes = reserved_bytes(nbytes, c);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.allocations;
    if (c >= 0 && free_lists_[c]) {
      FreeBlock* b = free_lists_[c];
      free_lists_[c] = b->next;
      ++stats_.cache_hits;
      stats_.cached_bytes -= bytes;
      stats_.in_use_bytes += bytes;
      stats_.peak_in_use_bytes = std::max(stats_.peak_in_use_bytes, stats_.in_use_bytes);
      return b;
    }
  }
  // A miss: ask the system outside the lock, so other threads' hits do not wait on it.
  void* p = system_allocate(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.system_allocs;
  stats_.in_use_bytes += bytes;
  stats_.peak_in_use_bytes = std::max(stats_.peak_in_use_bytes, stats_.in_use_bytes);
  return p;
}

void CachingAllocator::deallocate(void* ptr, size_t nbytes) {
  if (!ptr) return;
  int c = options_.caching ? size_class(nbytes) : -1;
  size_t bytes = reserved_bytes(nbytes, c);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.in_use_bytes -= bytes;
    if (c >= 0 && stats_.cached_bytes + bytes <= options_.cache_limit_bytes) {
      auto* b = static_cast<FreeBlock*>(ptr);
      b->next = free_lists_[c];
      free_lists_[c] = b;
      stats_.cached_bytes += bytes;
      return;
    }
    ++stats_.system_frees;
  }
  system_free(ptr);
}

size_t CachingAllocator::release_all_locked() {
  size_t released = 0;
  for (int c = 0; c < kNumClasses; ++c) {
    while (FreeBlock* b = free_lists_[c]) {
      free_lists_[c] = b->next;
      system_free(b);
      released += class_bytes(c);
      ++stats_.system_frees;
    }
  }
  stats_.cached_bytes -= released;
  return released;
}

size_t CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  return release_all_locked();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_in_use_bytes = stats_.in_use_bytes;
}

CachingAllocator& cpu_allocator() {
  static CachingAllocator* instance = new CachingAllocator(options_from_env());
  return *instance;
}

AllocatorStats allocator_stats() { return cpu_allocator().stats(); }

size_t empty_cache() { return cpu_allocator().empty_cache(); }

}  // namespace kiln
