// The fused f32 attention (ops/cpu/flash_attention.h) against a naive reference that forms the
// full softmax in double: every ISA build on awkward shapes and block sizes, causal and not,
// T != S, strided layouts; forward O and log-sum-exp, and all three gradients. Then the op level:
// the f32 op on a transformer's head-split views against the f64 (materialising) op, and bitwise
// determinism across runs, thread counts and the two backward schedules.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/autograd/engine.h"
#include "kiln/core/rng.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/flash_attention.h"
#include "kiln/ops/ops.h"

using namespace kiln;
using namespace kiln::ops::cpu;

namespace {

bool cpu_has(const std::string& isa) {
  __builtin_cpu_init();
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return true;
}

std::vector<const FlashAttentionKernels*> runnable_isas() {
  std::vector<const FlashAttentionKernels*> ks;
  for (const char* isa : {"portable", "avx2", "avx512"})
    if (cpu_has(isa)) ks.push_back(flash_attention_kernels_for(isa));
  return ks;
}

// A (B, H, R, C) buffer. `odd` lays it out as (B, R, H, C + 3) memory, so rows and heads are both
// strided and rows are padded: what the kernels see for head-split views of a projection.
struct Buf {
  int64_t B, H, R, C, sb, sh, sr;
  std::vector<float> v;
  Buf(int64_t b, int64_t h, int64_t r, int64_t c, bool odd) : B(b), H(h), R(r), C(c) {
    if (odd) {
      sh = c + 3, sr = h * sh, sb = r * sr;
    } else {
      sr = c, sh = r * c, sb = h * sh;
    }
    v.assign(static_cast<size_t>(b * sb), std::nanf(""));  // padding must never be read into results
  }
  float& at(int64_t b, int64_t h, int64_t r, int64_t c) { return v[static_cast<size_t>(b * sb + h * sh + r * sr + c)]; }
  void randomize(std::mt19937& rng) {
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t r = 0; r < R; ++r)
          for (int64_t c = 0; c < C; ++c) at(b, h, r, c) = n(rng);
  }
  AttnIn in() const { return {v.data(), sb, sh, sr}; }
  AttnOut out() { return {v.data(), sb, sh, sr}; }
};

struct Case {
  int64_t B, H, T, S, D, Dv;
  bool causal;
  int64_t bq = 64, bk = 64;
  bool odd = false;
  std::string str() const {
    std::ostringstream os;
    os << "B" << B << " H" << H << " T" << T << " S" << S << " D" << D << " Dv" << Dv
       << (causal ? " causal" : " full") << " blocks " << bq << "x" << bk << (odd ? " strided" : "");
    return os.str();
  }
};

// Naive attention in double, one (b, h) at a time: the full (T, S) softmax, then the textbook
// gradients dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(P dP)), dQ = s dS K, dK = s dS^T Q.
struct Ref {
  std::vector<double> o, lse, dq, dk, dv;  // dense (B, H, rows, cols)
};

Ref naive(const Case& c, Buf& q, Buf& k, Buf& v, Buf& g) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
  Ref r;
  const int64_t BH = c.B * c.H;
  r.o.assign(BH * c.T * c.Dv, 0), r.lse.assign(BH * c.T, 0), r.dq.assign(BH * c.T * c.D, 0);
  r.dk.assign(BH * c.S * c.D, 0), r.dv.assign(BH * c.S * c.Dv, 0);
  std::vector<double> p(c.S), dp(c.S);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h) {
      const int64_t bh = b * c.H + h;
      for (int64_t i = 0; i < c.T; ++i) {
        double m = -INFINITY;
        for (int64_t j = 0; j < c.S; ++j) {
          double s = 0;
          for (int64_t d = 0; d < c.D; ++d) s += double(q.at(b, h, i, d)) * k.at(b, h, j, d);
          p[j] = c.causal && j > i ? -INFINITY : s * scale;
          m = std::max(m, p[j]);
        }
        double z = 0;
        for (int64_t j = 0; j < c.S; ++j) z += p[j] == -INFINITY ? 0 : std::exp(p[j] - m);
        for (int64_t j = 0; j < c.S; ++j) p[j] = p[j] == -INFINITY ? 0 : std::exp(p[j] - m) / z;
        r.lse[bh * c.T + i] = m + std::log(z);
        double dd = 0;
        for (int64_t j = 0; j < c.S; ++j) {
          dp[j] = 0;
          for (int64_t e = 0; e < c.Dv; ++e) {
            r.o[(bh * c.T + i) * c.Dv + e] += p[j] * v.at(b, h, j, e);
            dp[j] += double(g.at(b, h, i, e)) * v.at(b, h, j, e);
            r.dv[(bh * c.S + j) * c.Dv + e] += p[j] * g.at(b, h, i, e);
          }
          dd += p[j] * dp[j];
        }
        for (int64_t j = 0; j < c.S; ++j) {
          const double ds = p[j] * (dp[j] - dd) * scale;
          for (int64_t d = 0; d < c.D; ++d) {
            r.dq[(bh * c.T + i) * c.D + d] += ds * k.at(b, h, j, d);
            r.dk[(bh * c.S + j) * c.D + d] += ds * q.at(b, h, i, d);
          }
        }
      }
    }
  return r;
}

// |got - want| <= atol + rtol |want| everywhere; reports the first few misses.
void expect_close(Buf& got, const std::vector<double>& want, double atol, double rtol, const std::string& what) {
  int bad = 0;
  for (int64_t b = 0; b < got.B; ++b)
    for (int64_t h = 0; h < got.H; ++h)
      for (int64_t r = 0; r < got.R; ++r)
        for (int64_t c = 0; c < got.C; ++c) {
          const double w = want[static_cast<size_t>(((b * got.H + h) * got.R + r) * got.C + c)];
          const double x = got.at(b, h, r, c);
          if (!(std::fabs(x - w) <= atol + rtol * std::fabs(w)) && bad++ < 5)
            ADD_FAILURE() << what << " at (" << b << ", " << h << ", " << r << ", " << c << "): got " << x
                          << ", want " << w;
        }
}

struct FlashRun {
  Buf o, dq, dk, dv;
  std::vector<float> lse;
};

FlashForwardArgs fwd_args(const Case& c, const Buf& q, const Buf& k, const Buf& v, Buf& o, std::vector<float>& lse) {
  AttnDims d{c.B, c.H, c.T, c.S, c.D, c.Dv, c.causal, static_cast<float>(1.0 / std::sqrt(double(c.D))), c.bq, c.bk};
  return {d, q.in(), k.in(), v.in(), o.out(), lse.data()};
}

// Forward and backward through the given kernels; fused_backward picks the one-sweep schedule.
FlashRun run_flash(const FlashAttentionKernels& ks, const Case& c, const Buf& q, const Buf& k, const Buf& v, const Buf& g,
        int backward_schedule = -1) {
  FlashRun r{Buf(c.B, c.H, c.T, c.Dv, c.odd), Buf(c.B, c.H, c.T, c.D, c.odd), Buf(c.B, c.H, c.S, c.D, c.odd),
        Buf(c.B, c.H, c.S, c.Dv, c.odd), std::vector<float>(c.B * c.H * c.T)};
  FlashForwardArgs fa = fwd_args(c, q, k, v, r.o, r.lse);
  flash_attention_forward(ks, fa);
  FlashBackwardArgs ba{fa.dims, q.in(), k.in(), v.in(), r.o.in(), g.in(), r.lse.data(), r.dq.out(), r.dk.out(),
                       r.dv.out()};
  const int64_t BH = c.B * c.H;
  if (backward_schedule == 0) {
    ks.backward_fused(ba, 0, BH);
  } else if (backward_schedule == 1) {
    ks.backward_kv(ba, 0, BH * ((c.S + c.bk - 1) / c.bk));
    ks.backward_q(ba, 0, BH * ((c.T + c.bq - 1) / c.bq));
  } else {
    flash_attention_backward(ks, ba);
  }
  return r;
}

void check_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  Buf q(c.B, c.H, c.T, c.D, c.odd), k(c.B, c.H, c.S, c.D, c.odd), v(c.B, c.H, c.S, c.Dv, c.odd),
      g(c.B, c.H, c.T, c.Dv, c.odd);
  for (Buf* b : {&q, &k, &v, &g}) b->randomize(rng);
  const Ref ref = naive(c, q, k, v, g);
  for (const FlashAttentionKernels* ks : runnable_isas()) {
    SCOPED_TRACE(std::string(ks->isa) + " " + c.str());
    FlashRun r = run_flash(*ks, c, q, k, v, g);
    expect_close(r.o, ref.o, 2e-6, 2e-5, "O");
    for (int64_t i = 0; i < c.B * c.H * c.T; ++i)
      ASSERT_NEAR(r.lse[i], ref.lse[i], 2e-6 + 2e-6 * std::fabs(ref.lse[i])) << "lse row " << i;
    // Gradients sum over up to S (or T) terms of O(1) products: a looser absolute tolerance.
    expect_close(r.dq, ref.dq, 2e-5, 1e-4, "dQ");
    expect_close(r.dk, ref.dk, 2e-5, 1e-4, "dK");
    expect_close(r.dv, ref.dv, 2e-5, 1e-4, "dV");
  }
}

bool same_bits(const Buf& a, const Buf& b) { return a.v.size() == b.v.size() && !std::memcmp(a.v.data(), b.v.data(), a.v.size() * 4); }

}  // namespace

TEST(FlashAttention, SelfAttentionMatchesNaiveOnEveryIsa) {
  uint32_t seed = 1;
  for (int64_t T : {1, 7, 33, 257})
    for (int64_t D : {1, 7, 32, 64})
      for (bool causal : {true, false}) check_case({2, 3, T, T, D, D, causal}, seed++);
}

TEST(FlashAttention, SmallBlocksStridedLayoutsAndCrossAttention) {
  uint32_t seed = 100;
  // Several blocks per axis at small T, unequal block sizes, and the (B, T, H, D + 3) layout.
  for (auto [bq, bk] : {std::pair<int64_t, int64_t>{16, 32}, {32, 16}, {16, 16}})
    for (bool causal : {true, false}) {
      check_case({1, 2, 57, 57, 7, 7, causal, bq, bk, true}, seed++);
      check_case({2, 1, 33, 33, 32, 32, causal, bq, bk, false}, seed++);
    }
  // T != S (the causal mask stays top-left aligned: query t sees keys 0..t) and Dv != D.
  for (bool causal : {true, false}) {
    check_case({2, 2, 7, 33, 8, 5, causal}, seed++);
    check_case({2, 2, 70, 9, 3, 17, causal, 16, 16}, seed++);
    check_case({1, 3, 33, 129, 32, 16, causal, 32, 64, true}, seed++);
  }
}

TEST(FlashAttention, FusedAndTwoSweepBackwardAgreeBitwise) {
  for (const FlashAttentionKernels* ks : runnable_isas())
    for (bool causal : {true, false}) {
      SCOPED_TRACE(ks->isa);
      Case c{2, 2, 100, 100, 16, 16, causal, 32, 32, true};
      std::mt19937 rng(7);
      Buf q(c.B, c.H, c.T, c.D, c.odd), k(c.B, c.H, c.S, c.D, c.odd), v(c.B, c.H, c.S, c.Dv, c.odd),
          g(c.B, c.H, c.T, c.Dv, c.odd);
      for (Buf* b : {&q, &k, &v, &g}) b->randomize(rng);
      FlashRun a = run_flash(*ks, c, q, k, v, g, 0), b = run_flash(*ks, c, q, k, v, g, 1);
      EXPECT_TRUE(same_bits(a.o, b.o));
      EXPECT_TRUE(same_bits(a.dq, b.dq));
      EXPECT_TRUE(same_bits(a.dk, b.dk));
      EXPECT_TRUE(same_bits(a.dv, b.dv));
    }
}

namespace {

struct OpResult {
  Tensor y, dq, dk, dv;
};

// gpt_char's attention: q, k, v as head-split views of one (B, T, 3C) projection.
OpResult op_on_views(DType dt, int64_t B, int64_t T, int64_t H, int64_t D, uint64_t seed) {
  Generator gen(seed);
  const int64_t C = H * D;
  Tensor qkv = to_dtype_raw(randn({B, T, 3 * C}, gen), dt).set_requires_grad(true);
  auto heads = [&](int64_t i) {
    return ops::permute(ops::reshape(ops::slice(qkv, 2, i * C, (i + 1) * C), {B, T, H, D}), {0, 2, 1, 3});
  };
  Tensor y = ops::scaled_dot_product_attention(heads(0), heads(1), heads(2), true);
  Tensor gout = to_dtype_raw(randn({B, H, T, D}, gen), dt);
  autograd::backward({y}, {gout});
  Tensor gr = qkv.grad();
  return {y, ops::slice(gr, 2, 0, C), ops::slice(gr, 2, C, 2 * C), ops::slice(gr, 2, 2 * C, 3 * C)};
}

void expect_tensors_close(const Tensor& a, const Tensor& b, double atol, double rtol, const char* what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  int bad = 0;
  for (size_t i = 0; i < x.size(); ++i)
    if (!(std::fabs(x[i] - y[i]) <= atol + rtol * std::fabs(y[i])) && bad++ < 5)
      ADD_FAILURE() << what << " element " << i << ": " << x[i] << " vs " << y[i];
}

bool same_values(const Tensor& a, const Tensor& b) {
  std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  return x.size() == y.size() && !std::memcmp(x.data(), y.data(), x.size() * 4);
}

struct ThreadsGuard {
  int saved = get_num_threads();
  ~ThreadsGuard() { set_num_threads(saved); }
};

}  // namespace

TEST(FlashAttention, OpOnHeadSplitViewsMatchesF64Op) {
  // The f64 op is the materialising path, itself gradchecked in the AttentionOps table.
  OpResult f = op_on_views(DType::f32, 3, 70, 4, 16, 11), d = op_on_views(DType::f64, 3, 70, 4, 16, 11);
  expect_tensors_close(f.y, d.y, 2e-6, 2e-5, "y");
  expect_tensors_close(f.dq, d.dq, 2e-5, 1e-4, "dq");
  expect_tensors_close(f.dk, d.dk, 2e-5, 1e-4, "dk");
  expect_tensors_close(f.dv, d.dv, 2e-5, 1e-4, "dv");
  // The output and gradients come back in the projection's (B, T, H, D) memory order.
  EXPECT_TRUE(ops::reshape(ops::permute(f.y, {0, 2, 1, 3}), {3, 70, 64}).storage() == f.y.storage());
  EXPECT_TRUE(ops::permute(f.y, {0, 2, 1, 3}).is_contiguous());
}

TEST(FlashAttention, OpMatchesMaterializedF32Path) {
  Generator gen(5);
  Tensor q = randn({2, 3, 45, 8}, gen), k = randn({2, 3, 45, 8}, gen), v = randn({2, 3, 45, 6}, gen);
  for (bool causal : {true, false})
    expect_tensors_close(ops::scaled_dot_product_attention(q, k, v, causal),
                         ops::scaled_dot_product_attention_materialized(q, k, v, causal), 2e-6, 2e-5, "y");
}

TEST(FlashAttention, BitwiseDeterministicAcrossRunsAndThreadCounts) {
  ThreadsGuard guard;
  set_num_threads(2);
  OpResult a = op_on_views(DType::f32, 4, 128, 4, 32, 3), b = op_on_views(DType::f32, 4, 128, 4, 32, 3);
  set_num_threads(1);
  OpResult c = op_on_views(DType::f32, 4, 128, 4, 32, 3);
  for (const OpResult* r : {&b, &c}) {
    EXPECT_TRUE(same_values(a.y, r->y));
    EXPECT_TRUE(same_values(a.dq, r->dq));
    EXPECT_TRUE(same_values(a.dk, r->dk));
    EXPECT_TRUE(same_values(a.dv, r->dv));
  }
  // One (b, h) pair on two threads takes the two-sweep backward: still the same bits as one thread.
  set_num_threads(2);
  OpResult d = op_on_views(DType::f32, 1, 200, 1, 32, 9);
  set_num_threads(1);
  OpResult e = op_on_views(DType::f32, 1, 200, 1, 32, 9);
  EXPECT_TRUE(same_values(d.dq, e.dq));
  EXPECT_TRUE(same_values(d.dk, e.dk));
}

TEST(FlashAttention, OnlyTheRequestedGradients) {
  // Each subset of q, k, v requiring grad takes a different path (dS skipped when only dV is
  // wanted, dK/dV skipped when only dQ is); one and two threads (fused and two-sweep backward).
  ThreadsGuard guard;
  Generator gen(21);
  Tensor q0 = randn({1, 1, 90, 12}, gen), k0 = randn({1, 1, 90, 12}, gen), v0 = randn({1, 1, 90, 12}, gen);
  Tensor gout = randn({1, 1, 90, 12}, gen);
  for (int threads : {1, 2})
    for (int mask : {1, 2, 4, 5, 6}) {
      set_num_threads(threads);
      SCOPED_TRACE("threads " + std::to_string(threads) + " mask " + std::to_string(mask));
      std::vector<Tensor> f{clone_raw(q0), clone_raw(k0), clone_raw(v0)}, d;
      for (const Tensor& t : f) d.push_back(to_dtype_raw(t, DType::f64));
      for (int i = 0; i < 3; ++i)
        if (mask & (1 << i)) f[i].set_requires_grad(true), d[i].set_requires_grad(true);
      autograd::backward({ops::scaled_dot_product_attention(f[0], f[1], f[2], true)}, {gout});
      autograd::backward({ops::scaled_dot_product_attention(d[0], d[1], d[2], true)}, {to_dtype_raw(gout, DType::f64)});
      for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(f[i].grad().defined(), (mask & (1 << i)) != 0);
        if (f[i].grad().defined()) expect_tensors_close(f[i].grad(), d[i].grad(), 2e-5, 1e-4, "grad");
      }
    }
}
