// kiln tune-kernels: auto-tune ahead of time. Runs a training step (forward and backward) and a
// batch-1 inference pass of each named model, plus any extra GEMM shapes, with measured tuning
// switched on, so every GEMM blocking and convolution algorithm they use is searched once and
// stored in the tuning cache file. Later runs (KILN_AUTOTUNE=cached, the default) just read it.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "kiln/cli/commands.h"
#include "kiln/cli/synthetic.h"
#include "kiln/core/error.h"
#include "kiln/core/grad_mode.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/gemm.h"
#include "kiln/ops/cpu/tune_cache.h"

namespace kiln::cli {

namespace {

struct Shape {
  int64_t m, n, k;
};

Shape parse_shape(const std::string& s) {
  Shape sh{};
  char x1 = 0, x2 = 0;
  std::istringstream in(s);
  in >> sh.m >> x1 >> sh.n >> x2 >> sh.k;
  KILN_CHECK(in && in.eof() && x1 == 'x' && x2 == 'x' && sh.m > 0 && sh.n > 0 && sh.k > 0,
             "tune-kernels: --gemm expects MxNxK with positive sizes, got '", s, "'");
  return sh;
}

}  // namespace

int run_tune_kernels(const TuneArgs& args) {
  KILN_CHECK(args.threads > 0, "tune-kernels: --threads must be positive");
  std::vector<Shape> shapes;
  for (const auto& s : args.gemm_shapes) shapes.push_back(parse_shape(s));
  set_num_threads(static_cast<int>(args.threads));
  ops::cpu::set_tune_mode(ops::cpu::TuneMode::on);
  const size_t before = ops::cpu::tune_cache_size();
  auto t0 = std::chrono::steady_clock::now();
  for (const auto& name : args.models) {
    SyntheticTask train = make_synthetic_task(name, args.batch);
    forward_backward(train);
    SyntheticTask infer = make_synthetic_task(name, 1);
    infer.model->eval();
    NoGradGuard no_grad;
    (void)infer.model->forward(infer.input);
  }
  for (const Shape& s : shapes) {
    std::vector<float> a(s.m * s.k, 1.0f), b(s.k * s.n, 1.0f), c(s.m * s.n);
    ops::cpu::gemm_f32(1, s.m, s.n, s.k, {a.data(), 0, s.k, 1}, {b.data(), 0, s.n, 1}, c.data(), nullptr);
    ops::cpu::gemm_f32(1, s.m, s.n, s.k, {a.data(), 0, s.k, 1}, {b.data(), 0, 1, s.k}, c.data(), nullptr);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json j = {{"cache", ops::cpu::tune_cache_path()},
                      {"entries_before", before},
                      {"entries_after", ops::cpu::tune_cache_size()},
                      {"threads", args.threads},
                      {"seconds", secs}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace kiln::cli
