// kiln bench train: the framework's training-step speed on synthetic data of the right shape (it
// measures Kiln, not the disk), as one JSON line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "kiln/autograd/engine.h"
#include "kiln/cli/commands.h"
#include "kiln/cli/task.h"
#include "kiln/core/rng.h"
#include "kiln/core/thread_pool.h"
#include "kiln/nn/models.h"
#include "kiln/ops/ops.h"
#include "kiln/optim/optimizer.h"

namespace kiln::cli {

int run_bench_train(const BenchTrainArgs& args) {
  KILN_CHECK(args.steps > 0 && args.warmup >= 0 && args.threads > 0, "bench train: steps and threads must be "
             "positive");
  set_num_threads(static_cast<int>(args.threads));
  nn::ModelSpec spec;
  spec.name = args.model;
  bool text = args.model == "gpt_char";
  int64_t batch = args.batch > 0 ? args.batch : (text ? 32 : 128);
  constexpr int64_t kVocab = 65;  // the size of a typical English character vocabulary
  if (text) spec.vocab_size = kVocab;
  nn::ModulePtr model = nn::make_model(spec, 1);
  auto opt = optim::make_adam(model->parameters(), optim::AdamOptions{});
  Generator gen(2);
  Tensor input, target;
  if (text) {
    input = ops::clamp(ops::to(ops::mul(rand({batch, spec.context}, gen), static_cast<double>(kVocab)), DType::i64), 0,
                       kVocab - 1);
    target = ops::clamp(ops::to(ops::mul(rand({batch, spec.context}, gen), static_cast<double>(kVocab)), DType::i64),
                        0, kVocab - 1);
  } else {
    input = randn({batch, 1, 28, 28}, gen);
    target = ops::clamp(ops::to(ops::mul(rand({batch}, gen), 10.0), DType::i64), 0, 9);
  }
  std::vector<double> times;
  for (int64_t s = 0; s < args.warmup + args.steps; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    Tensor loss = task_loss(model->forward(input), target);
    autograd::backward(loss);
    opt->step();
    opt->zero_grad();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (s >= args.warmup) times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  double median = times[times.size() / 2];
  double mean = 0;
  for (double t : times) mean += t;
  mean /= static_cast<double>(times.size());
  int64_t samples = text ? batch * spec.context : batch;
  nlohmann::json j = {{"model", args.model},
                      {"batch", batch},
                      {"threads", args.threads},
                      {"steps", args.steps},
                      {"step_ms", median},
                      {"step_ms_mean", mean},
                      {"rate", static_cast<double>(samples) / (median / 1000.0)},
                      {"unit", text ? "tokens/s" : "images/s"}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace kiln::cli
