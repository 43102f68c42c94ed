// Fused-kernel code generation (graph/codegen.h) against the fused_elementwise interpreter: the
// same program, inputs and thread count, outputs allocated per call on both sides; the generated
// side goes through run_generated, the fused kernel's hook (program lookup included). Figures: the
// first-use cost (compile into an empty cache, then a load from the disk cache), and per program
// the median time per call, GB/s of compulsory traffic (inputs read once, outputs written once)
// and the ratio. The results are checked against each other (exit 1 on a mismatch beyond 1e-6).
// Usage: codegen_bench [--elements N] [--threads T] [--reps R]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kiln/core/thread_pool.h"
#include "kiln/graph/codegen.h"
#include "kiln/graph/graph.h"
#include "kiln/graph/kernels.h"
#include "kiln/ops/cpu/float_kernels.h"

namespace {

using namespace kiln;

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Median ms per call of a and of b, timed alternately (a, b, a, b, ...) so that drift in this
// shared machine's speed hits both sides alike.
template <typename A, typename B>
std::pair<double, double> alternate_ms(int reps, A a, B b) {
  a();  // warm: page faults, allocator
  b();
  std::vector<double> ta, tb;
  for (int r = 0; r < reps; ++r) {
    double t0 = now_s();
    a();
    double t1 = now_s();
    b();
    double t2 = now_s();
    ta.push_back((t1 - t0) * 1e3);
    tb.push_back((t2 - t1) * 1e3);
  }
  return {median(ta), median(tb)};
}

struct Program {
  const char* name;
  std::vector<std::string> code;
  int num_inputs;
};

}  // namespace

int main(int argc, char** argv) {
  int64_t n = int64_t{1} << 22;
  int threads = 1, reps = 21;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--elements")
      n = std::atoll(argv[i + 1]);
    else if (a == "--threads")
      threads = std::atoi(argv[i + 1]);
    else if (a == "--reps")
      reps = std::atoi(argv[i + 1]);
  }
  set_num_threads(threads);
  if (!graph::codegen::find_compiler()) {
    std::printf("{\"bench\": \"codegen\", \"skipped\": \"no C++ compiler (KILN_CXX, c++ or g++ on PATH)\"}\n");
    return 0;
  }
  // A private cache, so the first use really compiles.
  char tmpl[] = "/tmp/kiln-codegen-bench-XXXXXX";
  if (!::mkdtemp(tmpl)) return 1;
  ::setenv("KILN_CODEGEN_CACHE", tmpl, 1);

  const std::vector<Program> programs = {
      // 4 instructions, memory-bound: 3 inputs, 1 output
      {"mul_add_relu_scale", {"t0 = mul in0 in1", "t1 = add t0 in2", "t2 = relu t1", "t3 = mul t2 #0.5"}, 3},
      // 4 instructions with a vectorised approximation: compute-heavier
      {"bias_gelu_tanh_residual", {"t0 = add in0 in1", "t1 = gelu_tanh t0", "t2 = add t1 in2", "t3 = mul t2 #0.5"}, 3},
  };
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-3.f, 3.f);
  std::vector<Tensor> in;
  for (int i = 0; i < 3; ++i) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = u(rng);
    in.push_back(Tensor::from_vector(v, {n}));
  }
  const graph::KernelFn interpreter = graph::kernel_table().find("fused_elementwise");
  int status = 0;
  for (const Program& p : programs) {
    graph::Graph g;
    std::vector<graph::Value*> ins;
    for (int i = 0; i < p.num_inputs; ++i) {
      std::string name = "x";
      name += std::to_string(i);
      ins.push_back(g.add_input(name, DType::f32, {}));
    }
    graph::Node* node =
        g.add_node("fused_elementwise", ins, {g.add_value({}, DType::f32)},
                   {{"program", p.code}, {"outputs", std::vector<std::string>{"t3"}}, {"rank", int64_t{1}}});
    graph::fused::Program prog = graph::fused::parse(*node);

    double t0 = now_s();
    const graph::codegen::FusedFunction* fn = graph::codegen::find_or_compile(prog);
    const double compile_ms = (now_s() - t0) * 1e3;
    graph::codegen::clear_memory_cache();
    t0 = now_s();
    fn = graph::codegen::find_or_compile(prog);
    const double load_ms = (now_s() - t0) * 1e3;
    if (!fn) {
      std::printf("{\"bench\": \"codegen\", \"program\": \"%s\", \"error\": \"compile failed\"}\n", p.name);
      status = 1;
      continue;
    }
    std::printf(
        "{\"bench\": \"codegen\", \"program\": \"%s\", \"figure\": \"first use\", \"compile_ms\": %.1f, "
        "\"disk_cache_load_ms\": %.2f}\n",
        p.name, compile_ms, load_ms);

    std::vector<Tensor> by_interp, by_gen;
    auto [interp_ms, gen_ms] = alternate_ms(
        reps,
        [&] {
          graph::codegen::set_mode_override(graph::codegen::Mode::off);  // the interpreter, whatever the kernel does
          by_interp = interpreter(*node, in);
          graph::codegen::set_mode_override(std::nullopt);
        },
        [&] {
          by_gen = {Tensor::empty({n}, DType::f32)};
          // as the wired kernel: parse the node, then the hook
          if (!graph::codegen::run_generated(graph::fused::parse(*node), in, by_gen)) std::abort();
        });
    const float* a = by_interp[0].data<float>();
    const float* b = by_gen[0].data<float>();
    int64_t bitwise_equal = 0;
    double max_err = 0;
    for (int64_t i = 0; i < n; ++i) {
      bitwise_equal += std::memcmp(a + i, b + i, 4) == 0;
      max_err = std::max(max_err, std::abs(double(a[i]) - b[i]) / std::max(1.0, std::abs(double(a[i]))));
    }
    if (max_err > 1e-6) status = 1;
    const double bytes = 4.0 * n * (p.num_inputs + 1);
    std::printf(
        "{\"bench\": \"codegen\", \"program\": \"%s\", \"instructions\": %zu, \"elements\": %lld, "
        "\"threads\": %d, \"isa\": \"%s\", \"interpreter_ms\": %.4f, \"generated_ms\": %.4f, "
        "\"interpreter_gbs\": %.2f, \"generated_gbs\": %.2f, \"speedup\": %.2f, "
        "\"bitwise_equal_fraction\": %.6f, \"max_rel_diff\": %.3g}\n",
        p.name, p.code.size(), static_cast<long long>(n), threads, std::string(ops::cpu::simd_level()).c_str(),
        interp_ms, gen_ms, bytes / interp_ms / 1e6, bytes / gen_ms / 1e6, interp_ms / gen_ms, double(bitwise_equal) / n,
        max_err);
  }
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
  return status;
}
