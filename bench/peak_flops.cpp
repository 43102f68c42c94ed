// The machine's measured fp32 FMA peak (AVX2, and AVX-512 where present), on 1 thread and on all
// cores; one JSON object per (isa, threads). The fraction-of-peak figures in gemm_bench divide by
// this same measurement (bench/peak_flops.h).
// Usage: peak_flops [--threads 1,2] [--seconds 0.2] [--runs 5]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "peak_flops.h"

int main(int argc, char** argv) {
  using namespace kiln::bench;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<int> threads = cores > 1 ? std::vector<int>{1, cores} : std::vector<int>{1};
  double seconds = 0.2;
  int runs = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      threads = parse_thread_list(argv[++i]);
    } else if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: peak_flops [--threads 1,2] [--seconds 0.2] [--runs 5]\n");
      return 2;
    }
  }
  if (!cpu_has_avx2_fma()) {
    std::fprintf(stderr, "peak_flops: this CPU has no AVX2+FMA\n");
    return 1;
  }
  std::vector<PeakIsa> isas{PeakIsa::avx2};
  if (cpu_has_avx512()) isas.push_back(PeakIsa::avx512);
  for (PeakIsa isa : isas) {
    for (int t : threads) {
      if (t < 1) continue;
      PeakResult r = measure_peak(isa, t, seconds, runs);
      std::printf("{\"bench\": \"peak_flops\", \"isa\": \"%s\", \"threads\": %d, \"gflops\": %.1f, "
                  "\"gflops_median\": %.1f, \"gflops_per_thread\": %.1f, \"runs\": %d}\n",
                  isa == PeakIsa::avx512 ? "avx512" : "avx2", t, r.best_gflops, r.median_gflops,
                  r.best_gflops / t, r.runs);
      std::fflush(stdout);
    }
  }
  return 0;
}
