// Kiln's GEMM against a double-precision reference: every instruction set this CPU can run, every
// micro-kernel, blockings small enough to force many blocks, awkward shapes, transposed and
// strided operands, batches, every epilogue; plus the promise the tuner relies on: all
// configurations of one instruction set give bitwise-identical results.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kiln/core/rng.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/gemm.h"
#include "kiln/ops/cpu/gemm_kernel.h"
#include "kiln/ops/cpu/gemm_tuning.h"
#include "kiln/ops/cpu/tune_cache.h"

namespace kiln::ops::cpu {
namespace avx512emu {
extern const GemmKernelSet kGemmKernels;  // gemm_avx512_emu.cpp
}
namespace {

struct Operands {
  int64_t batch, M, N, K;
  bool a_trans, b_trans, a_shared = false;
  int64_t pad = 0;  // extra elements per stored row: strided, non-dense operands
  std::vector<float> A, B, C, bias, residual;
  MatrixView a, b;
  OutputView c;
};

// Fills operands with values in [-1, 1) from a fixed seed, stored as requested.
Operands make_operands(int64_t batch, int64_t M, int64_t N, int64_t K, bool at, bool bt, int64_t pad, uint64_t seed,
                       bool a_shared = false) {
  Operands o{batch, M, N, K, at, bt, a_shared, pad, {}, {}, {}, {}, {}, {}, {}, {}};
  uint64_t s = seed * 2654435761u + 12345;
  auto next = [&] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>((s >> 40) % 2000) / 1000.0f - 1.0f;
  };
  // A: (M, K) per batch entry; stored rows are K (+pad) long, or M (+pad) when transposed.
  int64_t a_ld = (at ? M : K) + pad, a_rows = at ? K : M;
  int64_t a_batches = a_shared ? 1 : batch;
  o.A.resize(a_batches * a_rows * a_ld + 1);
  for (auto& v : o.A) v = next();
  int64_t b_ld = (bt ? K : N) + pad, b_rows = bt ? N : K;
  o.B.resize(batch * b_rows * b_ld + 1);
  for (auto& v : o.B) v = next();
  int64_t c_ld = N + pad;
  o.C.assign(batch * M * c_ld, 0.0f);
  o.residual.resize(o.C.size());
  for (auto& v : o.residual) v = next();
  o.bias.resize(std::max(M, N));
  for (auto& v : o.bias) v = next();
  o.a = MatrixView{o.A.data(), a_shared ? 0 : a_rows * a_ld, at ? 1 : a_ld, at ? a_ld : 1};
  o.b = MatrixView{o.B.data(), b_rows * b_ld, bt ? 1 : b_ld, bt ? b_ld : 1};
  o.c = OutputView{o.C.data(), M * c_ld, c_ld};
  return o;
}

double gelu_ref(double x, bool tanh_form) {
  if (tanh_form) return 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
  return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
}

// The expected C in double, from the same float inputs, before the call (c_old = C at entry).
std::vector<double> reference(const Operands& o, const std::vector<float>& c_old, const GemmEpilogue& ep) {
  std::vector<double> out(o.C.size(), 0.0);
  const float* A = static_cast<const float*>(o.a.data);
  const float* B = static_cast<const float*>(o.b.data);
  for (int64_t bi = 0; bi < o.batch; ++bi)
    for (int64_t i = 0; i < o.M; ++i)
      for (int64_t j = 0; j < o.N; ++j) {
        double acc = 0;
        for (int64_t k = 0; k < o.K; ++k)
          acc += double(A[bi * o.a.batch_stride + i * o.a.row_stride + k * o.a.col_stride]) *
                 double(B[bi * o.b.batch_stride + k * o.b.row_stride + j * o.b.col_stride]);
        int64_t idx = bi * o.c.batch_stride + i * o.c.row_stride + j;
        double v = double(ep.alpha) * acc + (ep.accumulate ? double(c_old[idx]) : 0.0);
        if (ep.bias) v += ep.bias_per_row ? double(ep.bias[i]) : double(ep.bias[j]);
        if (ep.act == GemmActivation::relu) v = std::max(v, 0.0);
        if (ep.act == GemmActivation::gelu) v = gelu_ref(v, false);
        if (ep.act == GemmActivation::gelu_tanh) v = gelu_ref(v, true);
        if (ep.residual) v += double(ep.residual[idx]);
        out[idx] = v;
      }
  return out;
}

void expect_close(const Operands& o, const std::vector<double>& want, const std::string& what) {
  // Each product of values in [-1, 1) rounds within 2^-24; K of them stay within K * 2^-23.
  double tol = 4e-6 * (o.K + 4);
  for (int64_t bi = 0; bi < o.batch; ++bi)
    for (int64_t i = 0; i < o.M; ++i)
      for (int64_t j = 0; j < o.N; ++j) {
        int64_t idx = bi * o.c.batch_stride + i * o.c.row_stride + j;
        ASSERT_NEAR(o.C[idx], want[idx], tol) << what << " at (" << bi << ", " << i << ", " << j << ")";
      }
}

std::vector<const GemmKernelSet*> all_kernel_sets() {
  std::vector<const GemmKernelSet*> sets;
  for (const char* isa : {"portable", "avx2", "avx512"})
    if (const GemmKernelSet* ks = gemm_kernels_for(isa)) sets.push_back(ks);
  // The AVX-512 tile shapes on emulated 16-lane vectors (built for AVX2).
  if (gemm_kernels_for("avx2")) sets.push_back(&avx512emu::kGemmKernels);
  return sets;
}

// Blockings that force several blocks in every loop even on small shapes.
std::vector<GemmConfig> small_blockings(const GemmKernelSet& ks, int kernel) {
  const GemmMicroKernel& mk = ks.kernels[kernel];
  return {
      GemmConfig{kernel, mk.mr * 2, 16, mk.nr * 2, false},
      GemmConfig{kernel, mk.mr, 5, mk.nr, true},
      GemmConfig{kernel, mk.mr * 40, 256, mk.nr * 64, false},
  };
}

TEST(Gemm, EveryKernelEveryIsaAwkwardShapes) {
  const int64_t shapes[][3] = {{1, 1, 1}, {7, 33, 5}, {33, 7, 257}, {1, 257, 33}, {257, 1, 7}, {13, 100, 1000}};
  for (const GemmKernelSet* ks : all_kernel_sets())
    for (int kern = 0; kern < ks->count; ++kern)
      for (const auto& cfg : small_blockings(*ks, kern))
        for (const auto& s : shapes)
          for (int layout = 0; layout < 4; ++layout) {
            bool at = layout & 1, bt = layout & 2;
            Operands o = make_operands(1, s[0], s[1], s[2], at, bt, layout == 3 ? 3 : 0, s[0] + s[1] + s[2]);
            GemmEpilogue ep;
            auto want = reference(o, o.C, ep);
            sgemm_with(*ks, cfg, 1, s[0], s[1], s[2], o.a, o.b, o.c, ep);
            expect_close(o, want,
                         std::string(ks->isa) + " " + std::string(ks->kernels[kern].name) + " " + cfg.to_string() +
                             " layout " + std::to_string(layout));
            if (HasFatalFailure()) return;
          }
}

TEST(Gemm, EpiloguesMatchReference) {
  struct Case {
    const char* name;
    GemmEpilogue ep;
    bool use_bias, use_res;
  };
  // M = 19 runs the packed path, M = 3 the unpacked small-M kernels (both B layouts).
  for (int64_t M : {19, 3})
  for (const GemmKernelSet* ks : all_kernel_sets())
    for (int variant = 0; variant < 9; ++variant) {
      Operands o = make_operands(2, M, 37, 300, variant % 2 && M > 3, variant % 3 == 0, variant % 4 == 1 ? 0 : 1,
                                 77 + variant);
      std::vector<float> c_old = o.C;
      for (size_t i = 0; i < o.C.size(); ++i) o.C[i] = c_old[i] = 0.01f * float(i % 17);
      GemmEpilogue ep;
      ep.alpha = variant == 1 ? 0.5f : 1.0f;
      ep.accumulate = variant == 2 || variant == 7;
      if (variant >= 3) ep.bias = o.bias.data();
      ep.bias_per_row = variant == 4;
      ep.act = variant == 5 ? GemmActivation::relu
               : variant == 6 ? GemmActivation::gelu
               : variant == 7 ? GemmActivation::gelu_tanh
                              : GemmActivation::none;
      if (variant >= 6) ep.residual = o.residual.data();
      auto want = reference(o, c_old, ep);
      GemmConfig cfg{0, ks->kernels[0].mr, 64, ks->kernels[0].nr, variant % 2 == 0};
      sgemm_with(*ks, cfg, 2, M, 37, 300, o.a, o.b, o.c, ep);
      expect_close(o, want, std::string(ks->isa) + " M " + std::to_string(M) + " epilogue variant " +
                                std::to_string(variant));
      if (HasFatalFailure()) return;
    }
}

TEST(Gemm, BatchedWithSharedOperandAndThreads) {
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (int64_t batch : {1, 2, 5}) {
      Operands o = make_operands(batch, 40, 70, 90, false, true, 0, 5 + batch, /*a_shared=*/true);
      auto want = reference(o, o.C, {});
      sgemm(batch, 40, 70, 90, o.a, o.b, o.c);
      expect_close(o, want, "threads " + std::to_string(threads) + " batch " + std::to_string(batch));
    }
  }
  set_num_threads(2);
}

TEST(Gemm, EmptyDimensions) {
  Operands o = make_operands(1, 3, 4, 0, false, false, 0, 1);
  GemmEpilogue ep;
  ep.bias = o.bias.data();
  ep.act = GemmActivation::relu;
  sgemm(1, 3, 4, 0, o.a, o.b, o.c, ep);
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(o.C[i * 4 + j], std::max(o.bias[j], 0.0f));
  sgemm(1, 0, 4, 5, o.a, o.b, o.c);  // nothing to do, nothing touched
  sgemm(0, 3, 4, 5, o.a, o.b, o.c);
}

// Tuning may pick any micro-kernel, blocking or thread split; none may change a single bit.
TEST(Gemm, AllConfigurationsOfAnIsaAreBitwiseIdentical) {
  for (const GemmKernelSet* ks : all_kernel_sets()) {
    Operands base = make_operands(1, 61, 83, 700, false, true, 0, 9);
    std::vector<float> first;
    for (int threads : {1, 2})
      for (int kern = 0; kern < ks->count; ++kern)
        for (const auto& cfg : small_blockings(*ks, kern)) {
          set_num_threads(threads);
          Operands o = base;
          o.a.data = o.A.data();
          o.b.data = o.B.data();
          o.c.data = o.C.data();
          GemmEpilogue ep;
          ep.bias = o.bias.data();
          sgemm_with(*ks, cfg, 1, 61, 83, 700, o.a, o.b, o.c, ep);
          if (first.empty()) first = o.C;
          ASSERT_EQ(0, std::memcmp(first.data(), o.C.data(), first.size() * sizeof(float)))
              << ks->isa << " " << ks->kernels[kern].name << " " << cfg.to_string() << " threads " << threads;
        }
  }
  set_num_threads(2);
}

// A constant B packed once (compiled graphs' weights) gives the same bits as packing per call:
// packed path (M > 4, one and several depth blocks, edge panels) and unpacked small-M rows, B
// stored as (K, N) or as a Linear weight (N, K), every epilogue, 1 and 2 threads.
TEST(Gemm, PrepackedBIsBitwiseTheUnpackedProduct) {
  for (int threads : {1, 2})
    for (int64_t M : {1, 4, 5, 33, 130})
      for (int64_t K : {7, 300, 1100})
        for (int variant = 0; variant < 4; ++variant) {
          set_num_threads(threads);
          const int64_t N = variant % 2 ? 37 : 257;
          const bool bt = variant < 2;
          Operands o = make_operands(1, M, N, K, false, bt, variant == 3 ? 3 : 0, 11 + variant);
          GemmEpilogue ep;
          ep.bias = variant >= 1 ? o.bias.data() : nullptr;
          ep.act = variant == 1 ? GemmActivation::relu : variant == 2 ? GemmActivation::gelu_tanh : GemmActivation::none;
          ep.residual = variant == 2 ? o.residual.data() : nullptr;
          auto want = reference(o, o.C, ep);
          sgemm(1, M, N, K, o.a, o.b, o.c, ep);
          const std::vector<float> unpacked = o.C;
          std::fill(o.C.begin(), o.C.end(), 0.0f);
          PackedB packed = pack_b_once(K, N, o.b);
          sgemm_prepacked(M, o.a, packed, o.c, ep);
          const std::string what = "threads " + std::to_string(threads) + " M " + std::to_string(M) + " K " +
                                   std::to_string(K) + " variant " + std::to_string(variant);
          ASSERT_EQ(0, std::memcmp(unpacked.data(), o.C.data(), o.C.size() * sizeof(float))) << what;
          expect_close(o, want, what);
          if (HasFatalFailure()) return;
        }
  set_num_threads(2);
}

TEST(Gemm, RunsInsideAParallelRegion) {
  Operands o = make_operands(1, 50, 60, 70, true, false, 0, 3);
  auto want = reference(o, o.C, {});
  std::vector<std::vector<float>> outs(4, std::vector<float>(o.C.size()));
  parallel_for(0, 4, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) sgemm(1, 50, 60, 70, o.a, o.b, OutputView{outs[t].data(), 50 * 60, 60});
  });
  for (auto& out : outs) {
    o.C = out;
    expect_close(o, want, "nested");
  }
}

TEST(GemmTuning, ConfigRoundTripsAndSanitizes) {
  GemmConfig c{2, 96, 256, 2048, true}, back;
  ASSERT_TRUE(GemmConfig::parse(c.to_string(), &back));
  EXPECT_EQ(back.kernel, 2);
  EXPECT_EQ(back.mc, 96);
  EXPECT_EQ(back.kc, 256);
  EXPECT_EQ(back.nc, 2048);
  EXPECT_TRUE(back.split_n);
  EXPECT_FALSE(GemmConfig::parse("k=1 mc=x", &back));
  const GemmKernelSet& ks = gemm_kernels();
  GemmProblem p{1, 10, 10, 10, 1, false, false};
  GemmConfig bad = sanitize_gemm_config(ks, p, GemmConfig{99, 1, 100000, 1, false});
  EXPECT_EQ(bad.kernel, 0);
  EXPECT_EQ(bad.kc, 10);
  EXPECT_EQ(bad.mc % ks.kernels[0].mr, 0);
  EXPECT_EQ(bad.nc % ks.kernels[0].nr, 0);
}

TEST(GemmTuning, SearchStoresAWinnerThatIsThenUsed) {
  std::string path = ::testing::TempDir() + "kiln_tune_test.txt";
  std::remove(path.c_str());
  setenv("KILN_TUNE_CACHE", path.c_str(), 1);
  tune_cache_clear_memory();
  const GemmKernelSet& ks = gemm_kernels();
  GemmProblem p{1, 96, 128, 160, get_num_threads(), false, true};
  GemmConfig best = tune_gemm(ks, p);
  auto stored = tune_cache_get(p.key(ks.isa));
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(*stored, best.to_string());
  // The file survives a reload (a new process would read it).
  tune_cache_clear_memory();
  auto again = tune_cache_get(p.key(ks.isa));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, best.to_string());
  unsetenv("KILN_TUNE_CACHE");
  tune_cache_clear_memory();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kiln::ops::cpu
