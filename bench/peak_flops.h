// The machine's fp32 FMA peak, measured: independent FMA chains kept in registers (AVX2, and
// AVX-512 where the CPU has it), on one thread or on several at once. Shared by peak_flops.cpp
// and gemm_bench.cpp so "fraction of peak" is measured with the very same loop.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace kiln::bench {

enum class PeakIsa { avx2, avx512 };

// "1,2" -> {1, 2} for the benches' --threads; anything but positive integers is a one-line error.
inline std::vector<int> parse_thread_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 1 || v > 1024) {
      std::fprintf(stderr, "error: --threads expects positive integers like 1,2, got '%s'\n", s.c_str());
      std::exit(1);
    }
    out.push_back(static_cast<int>(v));
  }
  return out;
}

inline bool cpu_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
inline bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}

// 12 independent accumulators: enough to cover FMA latency (4-5 cycles) times FMA ports (2) on
// current x86 cores with room to spare. acc = acc * m + a with m just below 1 keeps the values
// finite and normal forever. Returns the sum so the loop cannot be optimised away.
// Flops per iteration: 12 chains * 8 lanes * 2.
__attribute__((target("avx2,fma"), noinline)) inline float fma_chains_avx2(int64_t iters, float seed) {
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-6f);
  __m256 c0 = _mm256_set1_ps(seed), c1 = _mm256_set1_ps(seed + 1), c2 = _mm256_set1_ps(seed + 2),
         c3 = _mm256_set1_ps(seed + 3), c4 = _mm256_set1_ps(seed + 4), c5 = _mm256_set1_ps(seed + 5),
         c6 = _mm256_set1_ps(seed + 6), c7 = _mm256_set1_ps(seed + 7), c8 = _mm256_set1_ps(seed + 8),
         c9 = _mm256_set1_ps(seed + 9), c10 = _mm256_set1_ps(seed + 10), c11 = _mm256_set1_ps(seed + 11);
  for (int64_t i = 0; i < iters; ++i) {
    c0 = _mm256_fmadd_ps(c0, m, a);
    c1 = _mm256_fmadd_ps(c1, m, a);
    c2 = _mm256_fmadd_ps(c2, m, a);
    c3 = _mm256_fmadd_ps(c3, m, a);
    c4 = _mm256_fmadd_ps(c4, m, a);
    c5 = _mm256_fmadd_ps(c5, m, a);
    c6 = _mm256_fmadd_ps(c6, m, a);
    c7 = _mm256_fmadd_ps(c7, m, a);
    c8 = _mm256_fmadd_ps(c8, m, a);
    c9 = _mm256_fmadd_ps(c9, m, a);
    c10 = _mm256_fmadd_ps(c10, m, a);
    c11 = _mm256_fmadd_ps(c11, m, a);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                           _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  return out[0] + out[7];
}

// Flops per iteration: 12 chains * 16 lanes * 2. Only called when the CPU has AVX-512F.
__attribute__((target("avx512f"), noinline)) inline float fma_chains_avx512(int64_t iters, float seed) {
  const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-6f);
  __m512 c0 = _mm512_set1_ps(seed), c1 = _mm512_set1_ps(seed + 1), c2 = _mm512_set1_ps(seed + 2),
         c3 = _mm512_set1_ps(seed + 3), c4 = _mm512_set1_ps(seed + 4), c5 = _mm512_set1_ps(seed + 5),
         c6 = _mm512_set1_ps(seed + 6), c7 = _mm512_set1_ps(seed + 7), c8 = _mm512_set1_ps(seed + 8),
         c9 = _mm512_set1_ps(seed + 9), c10 = _mm512_set1_ps(seed + 10), c11 = _mm512_set1_ps(seed + 11);
  for (int64_t i = 0; i < iters; ++i) {
    c0 = _mm512_fmadd_ps(c0, m, a);
    c1 = _mm512_fmadd_ps(c1, m, a);
    c2 = _mm512_fmadd_ps(c2, m, a);
    c3 = _mm512_fmadd_ps(c3, m, a);
    c4 = _mm512_fmadd_ps(c4, m, a);
    c5 = _mm512_fmadd_ps(c5, m, a);
    c6 = _mm512_fmadd_ps(c6, m, a);
    c7 = _mm512_fmadd_ps(c7, m, a);
    c8 = _mm512_fmadd_ps(c8, m, a);
    c9 = _mm512_fmadd_ps(c9, m, a);
    c10 = _mm512_fmadd_ps(c10, m, a);
    c11 = _mm512_fmadd_ps(c11, m, a);
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                           _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
  alignas(64) float out[16];  // (not _mm512_reduce_add_ps: GCC 12 warns inside it)
  _mm512_store_ps(out, s);
  return out[0] + out[15];
}

inline double flops_per_iter(PeakIsa isa) { return isa == PeakIsa::avx512 ? 12.0 * 16 * 2 : 12.0 * 8 * 2; }

inline float run_chains(PeakIsa isa, int64_t iters, float seed) {
  return isa == PeakIsa::avx512 ? fma_chains_avx512(iters, seed) : fma_chains_avx2(iters, seed);
}

// GFLOP/s of `threads` threads each running `iters` iterations at the same moment: total flops
// over the wall time from the common start to the last thread's end.
inline double peak_once(PeakIsa isa, int threads, int64_t iters) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<float> sink(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t)
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      sink[static_cast<size_t>(t)] = run_chains(isa, iters, static_cast<float>(t));
    });
  while (ready.load() < threads - 1) {
  }
  auto t0 = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  sink[0] = run_chains(isa, iters, 0.0f);
  for (auto& th : pool) th.join();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  volatile float keep = sink[0];  // the results must look used
  (void)keep;
  return flops_per_iter(isa) * static_cast<double>(iters) * threads / s / 1e9;
}

struct PeakResult {
  double best_gflops = 0;    // the peak: the fastest of the runs
  double median_gflops = 0;
  int runs = 0;
};

// Calibrates the iteration count to about `seconds` per run, then keeps the best of `runs` runs
// (on a shared machine the fastest run is the one least disturbed by others).
inline PeakResult measure_peak(PeakIsa isa, int threads, double seconds = 0.2, int runs = 5) {
  const int64_t probe = 1 << 20;
  peak_once(isa, 1, probe);  // wakes the core up
  double g = peak_once(isa, 1, probe);
  int64_t iters = std::max<int64_t>(probe, static_cast<int64_t>(g * 1e9 * seconds / flops_per_iter(isa)));
  std::vector<double> v;
  for (int r = 0; r < runs; ++r) v.push_back(peak_once(isa, threads, iters));
  std::sort(v.begin(), v.end());
  return {v.back(), v[v.size() / 2], runs};
}

// The best peak this CPU reaches at `threads` threads (AVX-512 where present, else AVX2).
inline double machine_peak_gflops(int threads, double seconds = 0.2, int runs = 5) {
  double p = measure_peak(PeakIsa::avx2, threads, seconds, runs).best_gflops;
  if (cpu_has_avx512()) p = std::max(p, measure_peak(PeakIsa::avx512, threads, seconds, runs).best_gflops);
  return p;
}

}  // namespace kiln::bench
