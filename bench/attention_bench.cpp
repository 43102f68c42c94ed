// Causal self-attention at gpt_char's shape (batch 32, 4 heads of 32, q/k/v in the (B, T, H, D)
// memory layout the model's head split gives), forward and forward+backward: the fused
// flash kernel against the materialising path it replaced, at T = 128 (the model) and at 512 and
// 1024, where the (B*H, T, T) probabilities the old path keeps for backward get large. One JSON
// object per figure; bench/attention_torch.py prints PyTorch's figures in the same form.
// Usage: attention_bench [flash|materialized] [T ...]   (default both, T = 128 512 1024)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "kiln/autograd/engine.h"
#include "kiln/core/grad_mode.h"
#include "kiln/core/rng.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/flash_attention.h"
#include "kiln/ops/cpu/float_kernels.h"
#include "kiln/ops/ops.h"

using namespace kiln;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One untimed warm-up run, then the median of `iters` timed runs (the machine is shared).
double median_ms(int iters, const std::function<void()>& fn) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    double t0 = now_ms();
    fn();
    t.push_back(now_ms() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

using AttnFn = Tensor (*)(const Tensor&, const Tensor&, const Tensor&, bool);

struct Shape4 {
  int64_t B, H, T, D;
};

void bench(const char* impl, AttnFn fn, const Shape4& s, int iters, double saved_bytes) {
  const int64_t B = s.B, H = s.H, T = s.T, D = s.D;
  Generator gen(1);
  // q, k, v (B, H, T, D) as views of (B, T, H, D) memory: the layout the model's head split of its
  // qkv projection has. They are leaves here, so the timings hold the attention op alone and not
  // the slice / reshape backward of the projection's split.
  auto input = [&] { return ops::permute(randn({B, T, H, D}, gen), {0, 2, 1, 3}).set_requires_grad(true); };
  Tensor q = input(), k = input(), v = input();
  Tensor gout = randn({B, H, T, D}, gen);
  // Useful causal flops: QK^T and PV over the lower triangle; backward does 2.5x the forward's.
  const double fwd_flops = 2.0 * B * H * (T * (T + 1) / 2.0) * (2.0 * D);
  double fwd = median_ms(iters, [&] {
    NoGradGuard ng;
    Tensor y = fn(q, k, v, true);
  });
  double fwd_bwd = median_ms(iters, [&] {
    autograd::backward({fn(q, k, v, true)}, {gout});
    for (Tensor* t : {&q, &k, &v}) t->set_grad(Tensor());
  });
  for (auto [name, ms, flops] : {std::tuple{"fwd", fwd, fwd_flops}, std::tuple{"fwd_bwd", fwd_bwd, 3.5 * fwd_flops}})
    std::printf(
        "{\"bench\": \"attention\", \"impl\": \"%s\", \"figure\": \"%s\", \"B\": %lld, \"H\": %lld, \"T\": %lld, "
        "\"D\": %lld, \"ms\": %.3f, \"gflops\": %.1f, \"saved_for_backward_mb\": %.2f, \"threads\": %d, "
        "\"isa\": \"%s\"}\n",
        impl, name, static_cast<long long>(B), static_cast<long long>(H), static_cast<long long>(T),
        static_cast<long long>(D), ms, flops / ms * 1e-6, saved_bytes / (1 << 20), get_num_threads(),
        std::string(ops::cpu::simd_level()).c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> Ts;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "flash" || a == "materialized")
      only = a;
    else
      Ts.push_back(std::atoll(argv[i]));
  }
  if (Ts.empty()) Ts = {128, 512, 1024};
  for (int64_t T : Ts) {
    const Shape4 s{32, 4, T, 32};
    const int iters = T <= 128 ? 30 : T <= 512 ? 8 : 4;
    const double bh = static_cast<double>(s.B * s.H);
    // Kept for backward besides q, k, v and the output: the log-sum-exp row vs the whole P.
    if (only != "materialized") bench("flash", ops::scaled_dot_product_attention, s, iters, bh * T * 4.0);
    if (only != "flash")
      bench("materialized", ops::scaled_dot_product_attention_materialized, s, iters, bh * T * T * 4.0);
  }
  return 0;
}
