// Fused-kernel code generation (graph/codegen.h) against the fused_elementwise interpreter: the
// same program, inputs and thread count, outputs allocated per call on both sides; the generated
// side goes through run_generated, the fused kernel's hook (program lookup included). Figures: the
// first-use cost (compile into an empty cache, then a load from the disk cache), and per program
// the median time per call, GB/s of compulsory traffic (inputs read once, outputs written once)
// and the ratio. The results are checked against each other (exit 1 on a mismatch beyond 1e-6).
// Then one reduction program (RMS norm's scale) unfused, fused interpreted and fused generated, on
// 1024-element and 64-element rows (exit 1 unless all three agree bitwise).
// Usage: codegen_bench [--elements N] [--threads T] [--reps R]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kiln/core/thread_pool.h"
#include "kiln/graph/codegen.h"
#include "kiln/graph/executor.h"
#include "kiln/graph/graph.h"
#include "kiln/graph/kernels.h"
#include "kiln/graph/passes.h"
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

// Median ms per call of each function, timed round-robin (as alternate_ms).
std::vector<double> round_robin_ms(int reps, const std::vector<std::function<void()>>& fns) {
  for (const auto& f : fns) f();  // warm
  std::vector<std::vector<double>> t(fns.size());
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < fns.size(); ++i) {
      double t0 = now_s();
      fns[i]();
      t[i].push_back((now_s() - t0) * 1e3);
    }
  std::vector<double> out;
  for (auto& v : t) out.push_back(median(v));
  return out;
}

// A reduction program (RMS norm's scale, rsqrt(mean(x * x) + eps) per row of `len`) three ways:
// the unfused graph (mul, mean, add, rsqrt nodes through the executor: the square is
// materialised), the fused node interpreted, and the fused node's generated code. Returns 1 when
// the three disagree beyond bitwise (the reduction is exact arithmetic in the eager order).
int bench_reduction(int64_t n, int64_t len, int threads, int reps) {
  const int64_t rows = n / len;
  const graph::SymShape xs = graph::fixed_shape({rows, len}), rs = graph::fixed_shape({rows, 1});
  auto build = [&](graph::Graph& g) {
    graph::Value* x = g.add_input("x", DType::f32, xs);
    graph::Value* sq = g.add_op("mul", {x, x}, {}, DType::f32, xs);
    graph::Value* m = g.add_op("mean", {sq}, {{"axes", std::vector<int64_t>{-1}}}, DType::f32, rs);
    graph::Value* e = g.add_op("add", {m, g.add_constant({}, Tensor::scalar(1e-5))}, {}, DType::f32, rs);
    g.mark_output(g.add_op("rsqrt", {e}, {}, DType::f32, rs));
  };
  graph::Graph unfused, fused_graph;
  build(unfused);
  build(fused_graph);
  graph::fuse_elementwise(fused_graph);
  if (fused_graph.nodes().size() != 1) {
    std::printf("{\"bench\": \"codegen_reduce\", \"error\": \"the program did not fuse\"}\n");
    return 1;
  }
  const graph::Node& node = *fused_graph.nodes()[0];
  std::string program;
  for (const std::string& line : std::get<std::vector<std::string>>(node.attrs.at("program")))
    program += (program.empty() ? "" : "; ") + line;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-3.f, 3.f);
  std::vector<float> v(static_cast<size_t>(rows * len));
  for (float& f : v) f = u(rng);
  const std::vector<Tensor> in = {Tensor::from_vector(v, {rows, len})};
  const graph::KernelFn kernel = graph::kernel_table().find("fused_elementwise");
  if (!graph::codegen::find_or_compile(graph::fused::parse(node))) return 1;
  graph::Executor exec(unfused);
  std::vector<Tensor> by_unfused, by_interp, by_gen;
  using graph::codegen::Mode;
  std::vector<double> ms = round_robin_ms(
      reps, {[&] { by_unfused = exec.run(in); },
             [&] {
               graph::codegen::set_mode_override(Mode::off);
               by_interp = kernel(node, in);
               graph::codegen::set_mode_override(std::nullopt);
             },
             [&] {
               graph::codegen::set_mode_override(Mode::on);
               by_gen = kernel(node, in);
               graph::codegen::set_mode_override(std::nullopt);
             }});
  const bool same = std::memcmp(by_unfused[0].data<float>(), by_interp[0].data<float>(), 4 * rows) == 0 &&
                    std::memcmp(by_gen[0].data<float>(), by_interp[0].data<float>(), 4 * rows) == 0;
  const double bytes = 4.0 * (rows * len + rows);  // compulsory: x read once, one value per row
  std::printf(
      "{\"bench\": \"codegen_reduce\", \"program\": \"%s\", \"rows\": %lld, \"row_length\": %lld, "
      "\"threads\": %d, \"isa\": \"%s\", \"unfused_ms\": %.4f, \"interpreter_ms\": %.4f, \"generated_ms\": %.4f, "
      "\"generated_gbs\": %.2f, \"speedup_vs_unfused\": %.2f, \"speedup_vs_interpreter\": %.2f, "
      "\"bitwise_equal\": %s}\n",
      program.c_str(), static_cast<long long>(rows), static_cast<long long>(len), threads,
      std::string(ops::cpu::simd_level()).c_str(), ms[0], ms[1], ms[2], bytes / ms[2] / 1e6, ms[0] / ms[2],
      ms[1] / ms[2], same ? "true" : "false");
  return same ? 0 : 1;
}

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
  for (int64_t len : {int64_t{1024}, int64_t{64}}) status |= bench_reduction(n, len, threads, reps);
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
  return status;
}
