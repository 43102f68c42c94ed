// GEMM blocking: heuristic defaults, the cache-backed lookup, and the measured search.
#include "kiln/ops/cpu/gemm_tuning.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <sstream>
#include <tuple>
#include <vector>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/tune_cache.h"

namespace kiln::ops::cpu {

namespace {

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Tuning is skipped below this many multiply-adds: the defaults are within noise there and a
// search would cost more than it could ever save. Above the upper bound (about 40 ms per call
// here) a search of ~20 candidates x 3 timed runs would stall the first call for seconds and
// need large scratch operands; such products are bandwidth-insensitive and the defaults hold.
constexpr int64_t kMinTunedMacs = int64_t{1} << 20;
constexpr int64_t kMaxTunedMacs = int64_t{1} << 31;

}  // namespace

std::string GemmConfig::to_string() const {
  std::ostringstream os;
  os << "k=" << kernel << " mc=" << mc << " kc=" << kc << " nc=" << nc << " split=" << (split_n ? 'n' : 'm');
  return os.str();
}

bool GemmConfig::parse(const std::string& s, GemmConfig* out) {
  GemmConfig c;
  char split = 0;
  long long mc, kc, nc;
  if (std::sscanf(s.c_str(), "k=%d mc=%lld kc=%lld nc=%lld split=%c", &c.kernel, &mc, &kc, &nc, &split) != 5)
    return false;
  if (split != 'n' && split != 'm') return false;
  c.mc = mc;
  c.kc = kc;
  c.nc = nc;
  c.split_n = split == 'n';
  *out = c;
  return true;
}

std::string GemmProblem::key(std::string_view isa) const {
  std::ostringstream os;
  os << "gemm:" << isa << ":t" << threads << ":b" << std::min<int64_t>(batch, threads > 1 ? threads : 1) << ":" << M
     << "x" << N << "x" << K << ":" << (a_trans ? 't' : 'n') << (b_trans ? 't' : 'n');
  return os.str();
}

GemmConfig sanitize_gemm_config(const GemmKernelSet& ks, const GemmProblem& p, GemmConfig c) {
  if (c.kernel < 0 || c.kernel >= ks.count) c.kernel = 0;
  const GemmMicroKernel& mk = ks.kernels[c.kernel];
  if (c.kc <= 0) c.kc = 256;
  c.kc = std::min(c.kc, p.K);
  if (c.mc <= 0) c.mc = 120;
  c.mc = std::max<int64_t>(mk.mr, c.mc / mk.mr * mk.mr);
  if (c.nc <= 0) c.nc = 4096;
  c.nc = std::max<int64_t>(mk.nr, c.nc / mk.nr * mk.nr);
  return c;
}

GemmConfig default_gemm_config(const GemmKernelSet& ks, const GemmProblem& p) {
  GemmConfig c;
  c.kernel = 0;
  const GemmMicroKernel& mk = ks.kernels[0];
  // Depth: whole K up to 512, else near-equal blocks of at most 512 (no block a sliver). Deep
  // blocks mean fewer passes of C through the cache; measured on a 2-core Zen 3 (4x24 kernel,
  // 1 thread): 1024^3 at kc = 512 92 GFLOP/s vs 88-90 at 256 and 84 at 128.
  const int64_t kblocks = (p.K + 511) / 512;
  c.kc = (p.K + kblocks - 1) / kblocks;
  // Rows: an mc x kc block of A of about 192 KiB (well inside a 512 KiB L2).
  const int64_t mc_target = std::clamp<int64_t>((192 * 1024 / 4) / c.kc, 4 * mk.mr, 240);
  c.mc = round_up(std::min(mc_target, round_up(p.M, mk.mr)), mk.mr);
  // Columns: a kc x nc block of B of about 4 MiB (L3-resident).
  c.nc = round_up(std::clamp<int64_t>((4 << 20) / 4 / c.kc, mk.nr, 8192), mk.nr);
  // Threads: split the longer side. Splitting N gives each thread its own slice of B (no barrier,
  // no B lines shared between cores) at the price of packing all of A, which is the small side
  // then; measured on a 2-core Zen 3: 128x784x256 150 vs 131 GFLOP/s, 256x4096x1024 138 vs 120,
  // 1024^3 159 vs 169 (there rows win).
  c.split_n = p.batch < p.threads && p.N > p.M && p.N >= int64_t{p.threads} * mk.nr;
  return sanitize_gemm_config(ks, p, c);
}

namespace {

struct MemoKey {
  const GemmKernelSet* ks;
  int64_t batch, M, N, K;
  int threads;
  bool at, bt;
  bool operator<(const MemoKey& o) const {
    return std::tie(ks, batch, M, N, K, threads, at, bt) < std::tie(o.ks, o.batch, o.M, o.N, o.K, o.threads, o.at, o.bt);
  }
};

std::mutex g_memo_mu;
std::map<MemoKey, GemmConfig> g_memo;

}  // namespace

GemmConfig gemm_config_for(const GemmKernelSet& ks, const GemmProblem& p) {
  MemoKey mk{&ks, p.batch, p.M, p.N, p.K, p.threads, p.a_trans, p.b_trans};
  {
    std::lock_guard<std::mutex> lock(g_memo_mu);
    auto it = g_memo.find(mk);
    if (it != g_memo.end()) return it->second;
  }
  GemmConfig cfg = default_gemm_config(ks, p);
  TuneMode mode = tune_mode();
  if (mode != TuneMode::off) {
    GemmConfig cached;
    auto hit = tune_cache_get(p.key(ks.isa));
    if (hit && GemmConfig::parse(*hit, &cached)) {
      cfg = sanitize_gemm_config(ks, p, cached);
    } else if (mode == TuneMode::on && !in_parallel_region()) {
      const int64_t macs = std::min(p.batch, int64_t{std::max(p.threads, 1)}) * p.M * p.N * p.K;
      if (macs >= kMinTunedMacs && macs <= kMaxTunedMacs) cfg = tune_gemm(ks, p);
    }
  }
  std::lock_guard<std::mutex> lock(g_memo_mu);
  g_memo[mk] = cfg;
  return cfg;
}

GemmConfig tune_gemm(const GemmKernelSet& ks, const GemmProblem& p) {
  // Scratch operands of the same shape and storage order; values do not affect speed.
  const int64_t bsz = std::min<int64_t>(p.batch, std::max(p.threads, 1));
  std::vector<float> A(bsz * p.M * p.K, 0.5f), B(bsz * p.K * p.N, 0.25f), C(bsz * p.M * p.N);
  MatrixView a{A.data(), p.M * p.K, p.a_trans ? 1 : p.K, p.a_trans ? p.M : 1};
  MatrixView b{B.data(), p.K * p.N, p.b_trans ? 1 : p.N, p.b_trans ? p.K : 1};
  OutputView c{C.data(), p.M * p.N, p.N};

  auto time_of = [&](const GemmConfig& cfg) {
    using clock = std::chrono::steady_clock;
    sgemm_with(ks, cfg, bsz, p.M, p.N, p.K, a, b, c, {});  // warm caches and packing buffers
    double best = 1e30;
    double spent = 0;
    for (int r = 0; r < 20 && (r < 3 || spent < 0.02); ++r) {
      auto t0 = clock::now();
      sgemm_with(ks, cfg, bsz, p.M, p.N, p.K, a, b, c, {});
      double dt = std::chrono::duration<double>(clock::now() - t0).count();
      best = std::min(best, dt);
      spent += dt;
    }
    return best;
  };

  GemmConfig best = default_gemm_config(ks, p);
  double best_t = time_of(best);
  auto consider = [&](GemmConfig cand) {
    cand = sanitize_gemm_config(ks, p, cand);
    double t = time_of(cand);
    if (t < best_t) {
      best_t = t;
      best = cand;
    }
  };
  // Coordinate search: micro-kernel shape, then depth, then rows, then columns, then the split.
  for (int k = 1; k < ks.count; ++k) {
    GemmConfig cand = best;
    cand.kernel = k;
    cand.mc = 0;  // re-derive for the new MR
    GemmProblem q = p;
    GemmConfig d = default_gemm_config(ks, q);
    cand.mc = round_up(d.mc, ks.kernels[k].mr);
    cand.nc = round_up(d.nc, ks.kernels[k].nr);
    consider(cand);
  }
  for (int64_t kc : {int64_t{128}, int64_t{192}, int64_t{256}, int64_t{320}, int64_t{384}, int64_t{512}}) {
    if (kc >= p.K && best.kc == p.K) continue;
    GemmConfig cand = best;
    cand.kc = kc;
    consider(cand);
  }
  const int mr = ks.kernels[best.kernel].mr;
  for (int64_t mc : {int64_t{48}, int64_t{72}, int64_t{96}, int64_t{144}, int64_t{192}, int64_t{240}, int64_t{336}}) {
    if (mc > round_up(p.M, mr) + mr) continue;
    GemmConfig cand = best;
    cand.mc = round_up(mc, mr);
    consider(cand);
  }
  for (int64_t nc : {int64_t{512}, int64_t{1024}, int64_t{2048}}) {
    if (nc >= p.N) continue;
    GemmConfig cand = best;
    cand.nc = nc;
    consider(cand);
  }
  if (p.threads > 1 && p.batch < p.threads) {
    GemmConfig cand = best;
    cand.split_n = !cand.split_n;
    consider(cand);
  }
  tune_cache_put(p.key(ks.isa), best.to_string());
  return best;
}

}  // namespace kiln::ops::cpu
