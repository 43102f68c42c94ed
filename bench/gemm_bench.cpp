// The GEMM workbench: GFLOP/s of Kiln's gemm_f32, oneDNN's matmul and OpenBLAS's sgemm side by
// side on the same data (row-major C(M,N) = A(M,K) @ B(K,N), and B given transposed as (N,K), the
// Linear layer's case), the ratios, and Kiln's fraction of the machine's measured FMA peak at the
// same thread count. One JSON object per (shape, threads), then one summary per thread count.
// Kiln's result is checked against OpenBLAS's (exit 1 when off by more than 1e-4 of max |C|).
// Usage: gemm_bench [--threads 1,2] [--reps N] [--shapes all|quick] [--seconds S] [--no-trans]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/gemm.h"
#include "peak_flops.h"

#ifdef KILN_HAVE_OPENBLAS
#if __has_include(<cblas-openblas.h>)
#include <cblas-openblas.h>
#else
#include <cblas.h>
#endif
#endif

namespace {

using kiln::ops::cpu::MatrixView;

struct GemmShape {
  int64_t M, N, K;
  bool trans_b;  // B stored as (N, K) row-major
  bool large;    // counts toward the fraction-of-peak figure
};

struct Lib {
  std::string name;
  std::function<void()> run;
};

struct Options {
  std::vector<int> threads{1, 2};
  int reps = 7;
  double seconds = 0.2;  // per measurement
  bool quick = false;
  bool trans = true;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// max |x - ref| / max |ref|: the error relative to the size of the result.
double rel_error(const std::vector<float>& x, const std::vector<float>& ref) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err = std::max(err, std::fabs(static_cast<double>(x[i]) - ref[i]));
    norm = std::max(norm, std::fabs(static_cast<double>(ref[i])));
  }
  return norm > 0 ? err / norm : err;
}

// Lets idle worker threads of the previous library go to sleep before the next one is timed:
// OpenBLAS's pthread workers spin for about 2^28 cycles after a call, which would steal the
// second core from whoever runs next.
void settle(const std::string& lib, int threads) {
  double ms = (lib == "openblas" && threads > 1) ? 150 : 10;
  std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(ms));
}

struct Row {
  GemmShape shape;
  int threads;
  std::vector<double> gflops;  // per library, in libs order
};

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  bool reps_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      opt.threads = kiln::bench::parse_thread_list(argv[++i]);
    } else if (a == "--reps" && i + 1 < argc) {
      opt.reps = std::max(1, std::atoi(argv[++i]));
      reps_given = true;
    } else if (a == "--shapes" && i + 1 < argc) {
      std::string s = argv[++i];
      if (s != "all" && s != "quick") {
        std::fprintf(stderr, "gemm_bench: --shapes is all or quick\n");
        return 2;
      }
      opt.quick = s == "quick";
    } else if (a == "--seconds" && i + 1 < argc) {
      opt.seconds = std::atof(argv[++i]);
    } else if (a == "--no-trans") {
      opt.trans = false;
    } else {
      std::fprintf(stderr,
                   "usage: gemm_bench [--threads 1,2] [--reps N] [--shapes all|quick] [--seconds S] [--no-trans]\n");
      return 2;
    }
  }
  if (opt.quick) {
    if (!reps_given) opt.reps = 3;
    opt.seconds = std::min(opt.seconds, 0.03);
  }

  // The six shapes; the first, second and fifth are the "large" ones.
  const int64_t base[6][3] = {{1024, 1024, 1024}, {2048, 2048, 2048}, {128, 256, 784},
                              {128, 784, 256},    {256, 4096, 1024},  {64, 128, 128}};
  const bool large[6] = {true, true, false, false, true, false};
  std::vector<GemmShape> shapes;
  for (int t = 0; t < (opt.trans ? 2 : 1); ++t)
    for (int s = 0; s < 6; ++s) shapes.push_back({base[s][0], base[s][1], base[s][2], t == 1, large[s]});

  std::vector<std::string> lib_names{"kiln", "onednn"};
#ifdef KILN_HAVE_OPENBLAS
  lib_names.push_back("openblas");
#endif
  const std::string ref_name = lib_names.back();  // OpenBLAS when present, else oneDNN

  bool ok = true;
  std::vector<Row> rows;
  for (int threads : opt.threads) {
    if (threads < 1) continue;
    kiln::set_num_threads(threads);
#ifdef KILN_HAVE_OPENBLAS
    openblas_set_num_threads(threads);
#endif
    const double peak = kiln::bench::machine_peak_gflops(threads, opt.quick ? 0.05 : 0.1, opt.quick ? 3 : 8);
    std::printf("{\"bench\": \"gemm_peak\", \"threads\": %d, \"peak_gflops\": %.1f}\n", threads, peak);
    std::fflush(stdout);

    for (const GemmShape& sh : shapes) {
      const int64_t M = sh.M, N = sh.N, K = sh.K;
      std::mt19937 rng(static_cast<uint32_t>(M * 7919 + N * 131 + K));
      std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
      std::vector<float> A(static_cast<size_t>(M * K)), B(static_cast<size_t>(K * N));
      for (float& v : A) v = dist(rng);
      for (float& v : B) v = dist(rng);  // (K, N), or (N, K) when trans_b
      std::vector<std::vector<float>> C(lib_names.size(), std::vector<float>(static_cast<size_t>(M * N)));

      const MatrixView av{A.data(), 0, K, 1};
      const MatrixView bv = sh.trans_b ? MatrixView{B.data(), 0, 1, K} : MatrixView{B.data(), 0, N, 1};
      std::vector<Lib> libs;
      for (size_t l = 0; l < lib_names.size(); ++l) {
        float* c = C[l].data();
        const std::string& name = lib_names[l];
        if (name == "kiln") {
          libs.push_back({name, [=] { kiln::ops::cpu::gemm_f32(1, M, N, K, av, bv, c, nullptr); }});
        } else if (name == "onednn") {
          libs.push_back({name, [=] { kiln::ops::cpu::gemm_f32_onednn(1, M, N, K, av, bv, c, nullptr); }});
        } else {
#ifdef KILN_HAVE_OPENBLAS
          const float* a = A.data();
          const float* b = B.data();
          const bool tb = sh.trans_b;
          libs.push_back({name, [=] {
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                                        static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f, a,
                                        static_cast<int>(K), b, static_cast<int>(tb ? K : N), 0.0f, c,
                                        static_cast<int>(N));
                          }});
#endif
        }
      }

      // Warm-up (primitive creation, packing buffers, page faults), then the correctness check.
      for (auto& lib : libs) {
        lib.run();
        lib.run();
        settle(lib.name, threads);
      }
      const double err_kiln = rel_error(C[0], C.back());
      const double err_onednn = lib_names.size() > 2 ? rel_error(C[1], C.back()) : 0.0;
      if (!(err_kiln <= 1e-4)) ok = false;

      // Repetitions sized to about opt.seconds per measurement, from one timed call each.
      const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
      std::vector<int> inner(libs.size());
      for (size_t l = 0; l < libs.size(); ++l) {
        double t0 = now_s();
        libs[l].run();
        double dt = std::max(now_s() - t0, 1e-7);
        inner[l] = static_cast<int>(std::clamp(opt.seconds / dt, 1.0, 1e6));
        settle(libs[l].name, threads);
      }
      // Interleaved: kiln, onednn, openblas, kiln, ... so drift of the machine hits all alike.
      std::vector<std::vector<double>> samples(libs.size());
      for (int r = 0; r < opt.reps; ++r) {
        for (size_t l = 0; l < libs.size(); ++l) {
          double t0 = now_s();
          for (int i = 0; i < inner[l]; ++i) libs[l].run();
          double dt = now_s() - t0;
          samples[l].push_back(flops * inner[l] / dt / 1e9);
          settle(libs[l].name, threads);
        }
      }
      Row row{sh, threads, {}};
      for (auto& s : samples) row.gflops.push_back(median(s));
      rows.push_back(row);

      const double kiln_g = row.gflops[0], dnnl_g = row.gflops[1];
      std::printf("{\"bench\": \"gemm\", \"M\": %lld, \"N\": %lld, \"K\": %lld, \"trans_b\": %s, \"threads\": %d, "
                  "\"kiln_gflops\": %.1f, \"onednn_gflops\": %.1f",
                  static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K),
                  sh.trans_b ? "true" : "false", threads, kiln_g, dnnl_g);
      if (lib_names.size() > 2) std::printf(", \"openblas_gflops\": %.1f", row.gflops[2]);
      std::printf(", \"kiln_vs_onednn\": %.3f", kiln_g / dnnl_g);
      if (lib_names.size() > 2) std::printf(", \"kiln_vs_openblas\": %.3f", kiln_g / row.gflops[2]);
      std::printf(", \"kiln_frac_peak\": %.3f, \"onednn_frac_peak\": %.3f, \"peak_gflops\": %.1f, "
                  "\"kiln_rel_err\": %.2e, \"onednn_rel_err\": %.2e, \"ref\": \"%s\", \"reps\": %d}\n",
                  kiln_g / peak, dnnl_g / peak, peak, err_kiln, err_onednn, ref_name.c_str(), opt.reps);
      std::fflush(stdout);
      if (!(err_kiln <= 1e-4))
        std::fprintf(stderr, "gemm_bench: Kiln's result is off by %.3e (relative) on %lldx%lldx%lld%s\n", err_kiln,
                     static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K),
                     sh.trans_b ? " (B transposed)" : "");
    }

    // Summary over the six shapes with B as (K, N) (the figures), and over the
    // transposed-B variants separately.
    for (int tb = 0; tb < (opt.trans ? 2 : 1); ++tb) {
      std::vector<double> vs_dnnl, vs_blas, frac_large;
      double min_ratio = 1e30;
      std::string min_shape;
      for (const Row& r : rows) {
        if (r.threads != threads || r.shape.trans_b != (tb == 1)) continue;
        double ratio = r.gflops[0] / r.gflops[1];
        vs_dnnl.push_back(ratio);
        if (r.gflops.size() > 2) vs_blas.push_back(r.gflops[0] / r.gflops[2]);
        if (ratio < min_ratio) {
          min_ratio = ratio;
          min_shape = std::to_string(r.shape.M) + "x" + std::to_string(r.shape.N) + "x" + std::to_string(r.shape.K);
        }
        if (r.shape.large) frac_large.push_back(r.gflops[0] / peak);
      }
      if (vs_dnnl.empty()) continue;
      double min_frac = *std::min_element(frac_large.begin(), frac_large.end());
      double med = median(vs_dnnl);
      std::printf("{\"bench\": \"gemm_summary\", \"threads\": %d, \"trans_b\": %s, \"median_kiln_vs_onednn\": %.3f, "
                  "\"min_kiln_vs_onednn\": %.3f, \"min_shape\": \"%s\"",
                  threads, tb ? "true" : "false", med, min_ratio, min_shape.c_str());
      if (!vs_blas.empty()) std::printf(", \"median_kiln_vs_openblas\": %.3f", median(vs_blas));
      std::printf(", \"kiln_frac_peak_large\": [");
      for (size_t i = 0; i < frac_large.size(); ++i) std::printf("%s%.3f", i ? ", " : "", frac_large[i]);
      std::printf("], \"min_frac_peak_large\": %.3f, \"peak_gflops\": %.1f, "
                  "\"meets_issue_targets\": %s}\n",
                  min_frac, peak, (med >= 1.0 && min_ratio >= 0.9 && min_frac >= 0.85) ? "true" : "false");
      std::fflush(stdout);
    }
  }
  if (!ok) {
    std::fprintf(stderr, "gemm_bench: FAILED: Kiln's GEMM disagrees with %s\n", ref_name.c_str());
    return 1;
  }
  return 0;
}
