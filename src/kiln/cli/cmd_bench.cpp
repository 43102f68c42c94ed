// kiln bench train / bench infer: the framework's speed on synthetic data of the right shape (it
// measures Kiln, not the disk), as one JSON line each.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "kiln/autograd/engine.h"
#include "kiln/cli/commands.h"
#include "kiln/cli/graph_util.h"
#include "kiln/cli/synthetic.h"
#include "kiln/cli/task.h"
#include "kiln/core/grad_mode.h"
#include "kiln/core/thread_pool.h"
#include "kiln/graph/compiled.h"
#include "kiln/io/model_trace.h"
#include "kiln/io/onnx/onnx_import.h"
#include "kiln/optim/optimizer.h"

namespace kiln::cli {

namespace {

struct Stats {
  double median, mean, p90, p99;
};

Stats summarise(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  double mean = 0;
  for (double t : ms) mean += t;
  mean /= static_cast<double>(ms.size());
  auto pct = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<size_t>(q * (ms.size() - 1) + 0.5))]; };
  return {pct(0.5), mean, pct(0.9), pct(0.99)};
}

template <typename F>
std::vector<double> time_steps(int64_t warmup, int64_t steps, F step) {
  std::vector<double> times;
  for (int64_t s = 0; s < warmup + steps; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    step();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (s >= warmup) times.push_back(ms);
  }
  return times;
}

void check_args(const BenchTrainArgs& args, const char* what) {
  KILN_CHECK(args.steps > 0 && args.warmup >= 0 && args.threads > 0, what,
             ": steps and threads must be positive, warmup non-negative");
}

}  // namespace

int run_bench_train(const BenchTrainArgs& args) {
  check_args(args, "bench train");
  set_num_threads(static_cast<int>(args.threads));
  SyntheticTask task = make_synthetic_task(args.model, args.batch);
  auto opt = optim::make_adam(task.model->parameters(), optim::AdamOptions{});
  Stats st = summarise(time_steps(args.warmup, args.steps, [&] {
    Tensor loss = task_loss(task.model->forward(task.input), task.target);
    autograd::backward(loss);
    opt->step();
    opt->zero_grad();
  }));
  nlohmann::json j = {{"model", args.model},
                      {"batch", task.input.size(0)},
                      {"threads", args.threads},
                      {"steps", args.steps},
                      {"step_ms", st.median},
                      {"step_ms_mean", st.mean},
                      {"rate", static_cast<double>(task.samples) / (st.median / 1000.0)},
                      {"unit", task.unit}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

namespace {

// bench infer on a graph: an .onnx file, or --model traced (engine graph).
int bench_infer_graph(const BenchTrainArgs& args) {
  int64_t batch = args.batch > 0 ? args.batch : 1;
  graph::Graph g;
  std::vector<Tensor> inputs;
  std::string unit = "samples/s";
  int64_t samples = batch;
  if (!args.model_file.empty()) {
    g = io::load_onnx(args.model_file);
    inputs = synthetic_inputs(g, batch);
  } else {
    SyntheticTask task = make_synthetic_task(args.model, batch);
    g = io::trace(*task.model, {task.input});
    inputs = {task.input};
    unit = task.unit;
    samples = task.samples;
  }
  graph::Compiled compiled(std::move(g), graph::CompileOptions{.optimize = !args.no_optimize});
  Stats st = summarise(time_steps(args.warmup, args.steps, [&] { (void)compiled.run(inputs); }));
  nlohmann::json j = {{"model", args.model_file.empty() ? args.model : args.model_file},
                      {"engine", args.no_optimize ? "graph (not optimised)" : "graph"},
                      {"batch", batch},
                      {"threads", args.threads},
                      {"steps", args.steps},
                      {"nodes", compiled.graph().nodes().size()},
                      {"latency_ms_p50", st.median},
                      {"latency_ms_p90", st.p90},
                      {"latency_ms_p99", st.p99},
                      {"latency_ms_mean", st.mean},
                      {"rate", static_cast<double>(samples) / (st.median / 1000.0)},
                      {"unit", unit}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

int run_bench_infer(const BenchTrainArgs& args) {
  check_args(args, "bench infer");
  set_num_threads(static_cast<int>(args.threads));
  if (!args.model_file.empty() || args.engine == "graph") return bench_infer_graph(args);
  SyntheticTask task = make_synthetic_task(args.model, args.batch > 0 ? args.batch : 1);
  task.model->eval();
  NoGradGuard no_grad;
  Stats st = summarise(time_steps(args.warmup, args.steps, [&] { (void)task.model->forward(task.input); }));
  nlohmann::json j = {{"model", args.model},
                      {"engine", "eager"},
                      {"batch", task.input.size(0)},
                      {"threads", args.threads},
                      {"steps", args.steps},
                      {"latency_ms_p50", st.median},
                      {"latency_ms_p90", st.p90},
                      {"latency_ms_p99", st.p99},
                      {"latency_ms_mean", st.mean},
                      {"rate", static_cast<double>(task.samples) / (st.median / 1000.0)},
                      {"unit", task.unit}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace kiln::cli
