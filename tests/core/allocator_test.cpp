// The caching allocator: size classes checked against hand-worked values, reuse, alignment, the
// statistics, the cache cap, empty_cache, concurrent use, and tensor memory reused across a loop.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "kiln/core/allocator.h"
#include "kiln/core/rng.h"
#include "kiln/core/tensor.h"

using namespace kiln;

namespace {
constexpr size_t kMiB = size_t{1} << 20;
bool aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kStorageAlignment == 0; }
}  // namespace

TEST(Allocator, SizeClassesByHand) {
  using A = CachingAllocator;
  EXPECT_EQ(A::block_size(0), 64u);
  EXPECT_EQ(A::block_size(1), 64u);
  EXPECT_EQ(A::block_size(64), 64u);
  EXPECT_EQ(A::block_size(65), 128u);
  EXPECT_EQ(A::block_size(4000), 4032u);
  EXPECT_EQ(A::block_size(4096), 4096u);
  EXPECT_EQ(A::block_size(4097), 5120u);  // (4 KiB, 8 KiB] is cut at 5, 6, 7, 8 KiB
  EXPECT_EQ(A::block_size(5120), 5120u);
  EXPECT_EQ(A::block_size(5121), 6144u);
  EXPECT_EQ(A::block_size(8192), 8192u);
  EXPECT_EQ(A::block_size(8193), 10240u);
  EXPECT_EQ(A::block_size(3 * kMiB + 1), 3 * kMiB + 512 * 1024);
  EXPECT_EQ(A::block_size(256 * kMiB), 256 * kMiB);
  EXPECT_EQ(A::block_size(256 * kMiB + 1), 256 * kMiB + 64);  // beyond the cache: rounded to 64
  EXPECT_EQ(A::size_class(0), 0);
  EXPECT_EQ(A::size_class(4096), 63);
  EXPECT_EQ(A::size_class(4097), 64);
  EXPECT_EQ(A::size_class(256 * kMiB), A::kNumClasses - 1);
  EXPECT_EQ(A::size_class(256 * kMiB + 1), -1);
}

TEST(Allocator, SizeClassesCoverEveryRequestWithLittleWaste) {
  std::mt19937_64 rng(7);
  int last_class = 0;
  for (size_t n = 0; n <= 70000; ++n) {  // every size through several ranges, classes monotone
    int c = CachingAllocator::size_class(n);
    ASSERT_GE(c, last_class) << n;
    last_class = c;
  }
  for (int i = 0; i < 20000; ++i) {
    size_t n = rng() % (CachingAllocator::kMaxCachedBytes + 1);
    size_t b = CachingAllocator::block_size(n);
    ASSERT_GE(b, n);
    ASSERT_EQ(b % kStorageAlignment, 0u);
    if (n > CachingAllocator::kSmallLimit) {
      ASSERT_LE(b, n + n / 4) << n;  // at most 25% over
    }
    // Every request of a class fits in that class's blocks: the largest request is the block size.
    ASSERT_EQ(CachingAllocator::size_class(b), CachingAllocator::size_class(n)) << n;
  }
}

TEST(Allocator, FreedBlockIsReusedForTheSameClass) {
  CachingAllocator a;
  void* p = a.allocate(1000);
  a.deallocate(p, 1000);
  void* q = a.allocate(1000);
  EXPECT_EQ(q, p);
  a.deallocate(q, 1000);
  void* r = a.allocate(1020);  // same 1024-byte class
  EXPECT_EQ(r, p);
  AllocatorStats s = a.stats();
  EXPECT_EQ(s.allocations, 3u);
  EXPECT_EQ(s.cache_hits, 2u);
  EXPECT_EQ(s.system_allocs, 1u);
  void* other = a.allocate(2000);  // another class: a fresh block
  EXPECT_NE(other, p);
  EXPECT_EQ(a.stats().system_allocs, 2u);
  a.deallocate(r, 1020);
  a.deallocate(other, 2000);
}

TEST(Allocator, BlocksAre64ByteAlignedAndWritable) {
  for (bool caching : {true, false}) {
    CachingAllocator a(AllocatorOptions{caching, 64 * kMiB});
    std::vector<std::pair<void*, size_t>> live;
    for (size_t n : {size_t{0}, size_t{1}, size_t{3}, size_t{63}, size_t{64}, size_t{65}, size_t{100}, size_t{4095},
                     size_t{4097}, size_t{12345}, size_t{65536}, size_t{1000001}, 3 * kMiB + 7}) {
      for (int rep = 0; rep < 3; ++rep) {
        void* p = a.allocate(n);
        ASSERT_NE(p, nullptr);
        EXPECT_TRUE(aligned(p)) << n << " " << p;
        std::memset(p, 0xAB, n);  // under ASan (system mode) an undersized block would be caught here
        live.emplace_back(p, n);
      }
      // Freed then allocated again: still aligned (the free-list link must not shift the block).
      a.deallocate(live.back().first, n);
      live.back().first = a.allocate(n);
      EXPECT_TRUE(aligned(live.back().first));
    }
    for (auto [p, n] : live) a.deallocate(p, n);
    EXPECT_EQ(a.stats().in_use_bytes, 0u);
  }
}

TEST(Allocator, ZeroSizeBlocksAreDistinct) {
  CachingAllocator a;
  void* p = a.allocate(0);
  void* q = a.allocate(0);
  EXPECT_NE(p, nullptr);
  EXPECT_NE(p, q);
  a.deallocate(p, 0);
  a.deallocate(q, 0);
  EXPECT_EQ(a.stats().cached_bytes, 128u);
}

TEST(Allocator, StatsFollowEveryCall) {
  CachingAllocator a;
  void* p = a.allocate(100);     // 128-byte block
  void* q = a.allocate(5000);    // 5120
  void* r = a.allocate(70000);   // (64 KiB, 128 KiB] cut at 80 KiB
  AllocatorStats s = a.stats();
  EXPECT_EQ(s.in_use_bytes, 128u + 5120u + 81920u);
  EXPECT_EQ(s.peak_in_use_bytes, s.in_use_bytes);
  EXPECT_EQ(s.cached_bytes, 0u);
  EXPECT_EQ(s.allocations, 3u);
  EXPECT_EQ(s.system_allocs, 3u);
  EXPECT_EQ(s.cache_hits, 0u);
  a.deallocate(r, 70000);
  a.deallocate(p, 100);
  s = a.stats();
  EXPECT_EQ(s.in_use_bytes, 5120u);
  EXPECT_EQ(s.cached_bytes, 128u + 81920u);
  EXPECT_EQ(s.peak_in_use_bytes, 128u + 5120u + 81920u);
  EXPECT_EQ(s.system_frees, 0u);
  a.reset_peak();
  EXPECT_EQ(a.stats().peak_in_use_bytes, 5120u);
  void* r2 = a.allocate(69000);  // same class as r
  EXPECT_EQ(r2, r);
  s = a.stats();
  EXPECT_EQ(s.cache_hits, 1u);
  EXPECT_EQ(s.cached_bytes, 128u);
  EXPECT_EQ(s.in_use_bytes, 5120u + 81920u);
  a.deallocate(q, 5000);
  a.deallocate(r2, 69000);
}

TEST(Allocator, CacheCapSendsFreesBackToTheSystem) {
  CachingAllocator a(AllocatorOptions{true, 10000});
  void* p = a.allocate(8192);
  void* q = a.allocate(8192);
  a.deallocate(p, 8192);  // 8192 <= 10000: cached
  a.deallocate(q, 8192);  // 16384 > 10000: back to the system
  AllocatorStats s = a.stats();
  EXPECT_EQ(s.cached_bytes, 8192u);
  EXPECT_EQ(s.system_frees, 1u);
  EXPECT_LE(s.cached_bytes, a.cache_limit_bytes());

  CachingAllocator none(AllocatorOptions{true, 0});
  void* t = none.allocate(64);
  none.deallocate(t, 64);
  EXPECT_EQ(none.stats().cached_bytes, 0u);
  EXPECT_EQ(none.stats().system_frees, 1u);
}

TEST(Allocator, HugeBlocksBypassTheCache) {
  CachingAllocator a;
  size_t n = CachingAllocator::kMaxCachedBytes + 1;  // virtual memory only: never touched
  void* p = a.allocate(n);
  EXPECT_TRUE(aligned(p));
  a.deallocate(p, n);
  AllocatorStats s = a.stats();
  EXPECT_EQ(s.cached_bytes, 0u);
  EXPECT_EQ(s.system_frees, 1u);
  EXPECT_EQ(s.in_use_bytes, 0u);
  EXPECT_EQ(s.peak_in_use_bytes, CachingAllocator::block_size(n));
}

TEST(Allocator, SystemModeNeverCaches) {
  CachingAllocator a(AllocatorOptions{false, 64 * kMiB});
  for (int i = 0; i < 3; ++i) a.deallocate(a.allocate(1000), 1000);
  AllocatorStats s = a.stats();
  EXPECT_EQ(s.system_allocs, 3u);
  EXPECT_EQ(s.system_frees, 3u);
  EXPECT_EQ(s.cache_hits, 0u);
  EXPECT_EQ(s.cached_bytes, 0u);
}

TEST(Allocator, EmptyCacheReturnsEverythingCached) {
  CachingAllocator a;
  std::vector<void*> blocks;
  for (size_t n = 100; n < 200000; n *= 3) blocks.push_back(a.allocate(n));
  size_t n = 100, expected = 0;
  for (void* p : blocks) {
    a.deallocate(p, n);
    expected += CachingAllocator::block_size(n);
    n *= 3;
  }
  void* kept = a.allocate(50);  // in use: empty_cache must leave it alone
  AllocatorStats before = a.stats();
  EXPECT_EQ(a.empty_cache(), expected);
  AllocatorStats after = a.stats();
  EXPECT_EQ(after.cached_bytes, 0u);
  EXPECT_EQ(after.in_use_bytes, before.in_use_bytes);
  EXPECT_EQ(after.system_frees, before.system_frees + blocks.size());
  EXPECT_EQ(a.empty_cache(), 0u);
  void* again = a.allocate(100);  // the next request is a system allocation again
  EXPECT_EQ(a.stats().system_allocs, after.system_allocs + 1);
  std::memset(kept, 1, 50);
  a.deallocate(kept, 50);
  a.deallocate(again, 100);
}

TEST(Allocator, ManyThreadsAllocateAndFreeConcurrently) {
  CachingAllocator a(AllocatorOptions{true, 8 * kMiB});  // a small cap, so both paths are taken
  constexpr int kThreads = 8, kOps = 20000, kLive = 16;
  std::vector<std::vector<std::pair<void*, size_t>>> leftovers(kThreads);
  std::vector<std::thread> threads;
  std::atomic<int> corrupted{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<uint32_t>(t));
      std::vector<std::pair<void*, size_t>> live;
      auto check_and_free = [&](size_t i) {
        auto [p, n] = live[i];
        // Each block carries its owner's tag: a block handed to two threads at once shows up here.
        if (n > 0 && static_cast<unsigned char*>(p)[n - 1] != static_cast<unsigned char>(t + 1)) ++corrupted;
        if (n > 0 && static_cast<unsigned char*>(p)[0] != static_cast<unsigned char>(t + 1)) ++corrupted;
        a.deallocate(p, n);
        live[i] = live.back();
        live.pop_back();
      };
      for (int op = 0; op < kOps; ++op) {
        if (live.size() == kLive || (!live.empty() && rng() % 2)) {
          check_and_free(rng() % live.size());
        } else {
          size_t n = rng() % 3 == 0 ? rng() % 300000 : rng() % 2000;
          void* p = a.allocate(n);
          if (!aligned(p)) ++corrupted;
          if (n > 0) std::memset(p, t + 1, n);
          live.emplace_back(p, n);
        }
      }
      leftovers[t] = std::move(live);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(corrupted.load(), 0);
  for (int t = kThreads - 1; t >= 0; --t)  // freed on another thread than the one that allocated
    for (auto [p, n] : leftovers[t]) a.deallocate(p, n);
  AllocatorStats s = a.stats();
  EXPECT_EQ(s.in_use_bytes, 0u);
  EXPECT_LE(s.cached_bytes, a.cache_limit_bytes());
  EXPECT_EQ(s.cache_hits + s.system_allocs, s.allocations);
  EXPECT_GT(s.cache_hits, 0u);
  EXPECT_EQ(a.empty_cache(), s.cached_bytes);
  EXPECT_EQ(a.stats().system_frees, s.system_allocs);  // every block went back exactly once
}

// A fixed computation repeated like a training step: after the first iteration every tensor it
// creates is served from the cache, so the number of system allocations stops growing.
TEST(Allocator, TensorStorageIsReusedAcrossATrainingLikeLoop) {
  if (!cpu_allocator().caching()) GTEST_SKIP() << "system allocator (ASan build or KILN_ALLOCATOR=system)";
  if (cpu_allocator().cache_limit_bytes() < 64 * kMiB) GTEST_SKIP() << "KILN_ALLOCATOR_CACHE_MB is too small";
  Generator gen(3);
  Tensor w = randn({64, 32}, gen);  // (C_in, C_out)
  uint64_t after_first = 0;
  double checksum = 0;
  for (int step = 0; step < 10; ++step) {
    Tensor x = randn({128, 64}, gen);  // (B, C_in)
    Tensor h = Tensor::zeros({128, 32});
    const float* xp = x.data<float>();
    const float* wp = w.data<float>();
    float* hp = h.data<float>();
    for (int b = 0; b < 128; ++b)
      for (int i = 0; i < 64; ++i)
        for (int o = 0; o < 32; ++o) hp[b * 32 + o] += xp[b * 64 + i] * wp[i * 32 + o];
    Tensor hd = to_dtype_raw(h, DType::f64);
    Tensor ht = contiguous_raw(h.as_strided({32, 128}, {1, 32}, 0));  // a transposed copy
    Tensor g = clone_raw(ht);
    Tensor big = Tensor::full({1000, 1000}, 0.5);  // a multi-megabyte activation-sized block
    Tensor scalar = Tensor::scalar(1.0);
    Tensor none = Tensor::empty({0, 5});
    checksum += hd.data<double>()[0] + g.data<float>()[0] + big.data<float>()[999999];
    EXPECT_TRUE(aligned(big.raw_data()));
    if (step == 0) after_first = allocator_stats().system_allocs;
  }
  EXPECT_EQ(allocator_stats().system_allocs, after_first);
  EXPECT_TRUE(std::isfinite(checksum));
}

TEST(Allocator, FreedTensorMemoryIsHandedToTheNextTensor) {
  if (!cpu_allocator().caching()) GTEST_SKIP() << "system allocator (ASan build or KILN_ALLOCATOR=system)";
  Tensor t = Tensor::empty({12345});
  const void* p = t.raw_data();
  uint64_t hits = allocator_stats().cache_hits;
  t = Tensor();
  Tensor u = Tensor::empty({12340});  // same size class
  EXPECT_EQ(u.raw_data(), p);
  EXPECT_EQ(allocator_stats().cache_hits, hits + 1);
  u = Tensor();
  EXPECT_GE(empty_cache(), CachingAllocator::block_size(12340 * 4));
  EXPECT_EQ(allocator_stats().cached_bytes, 0u);
}

TEST(Allocator, ScratchBufferIsAlignedMovableAndCached) {
  AllocatorStats before = allocator_stats();
  const float* first = nullptr;
  {
    ScratchBuffer<float> a(1001);
    ASSERT_EQ(a.size(), 1001u);
    EXPECT_TRUE(aligned(a.data()));
    for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i);
    ScratchBuffer<float> b(std::move(a));
    EXPECT_EQ(a.data(), nullptr);
    EXPECT_EQ(b[1000], 1000.0f);
    first = b.data();
    ScratchBuffer<float> c;
    c = std::move(b);
    EXPECT_EQ(c.data(), first);
    // 4004 bytes round up to 4032 (63 cache lines) with or without the cache.
    EXPECT_EQ(allocator_stats().in_use_bytes, before.in_use_bytes + 4032);
  }
  EXPECT_EQ(allocator_stats().in_use_bytes, before.in_use_bytes);
  if (cpu_allocator().caching()) {
    ScratchBuffer<float> again(1001);  // the block just freed
    EXPECT_EQ(again.data(), first);
  }
}
