// A fixed, tiny, deterministic training workload for `valgrind --tool=callgrind` (bench/callgrind.sh):
// one model (mlp or cnn), batch 16, 1 thread, synthetic data from fixed seeds, Adam. Two warm-up
// steps run first (first-use allocations, packing buffers, kernel selection); the measured steps
// run inside callgrind_measured_steps(), which callgrind.sh names in --toggle-collect so only they
// are counted. Without valgrind it just runs and prints the final loss.
// Usage: callgrind_step mlp|cnn [steps]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "kiln/autograd/engine.h"
#include "kiln/cli/task.h"
#include "kiln/core/rng.h"
#include "kiln/core/thread_pool.h"
#include "kiln/nn/models.h"
#include "kiln/ops/cpu/tune_cache.h"
#include "kiln/ops/ops.h"
#include "kiln/optim/optimizer.h"

namespace {

struct Workload {
  kiln::nn::ModulePtr model;
  std::unique_ptr<kiln::optim::Optimizer> opt;
  kiln::Tensor input;   // (16, 1, 28, 28)
  kiln::Tensor target;  // (16) class ids
};

double train_step(Workload& w) {
  kiln::Tensor loss = kiln::cli::task_loss(w.model->forward(w.input), w.target);
  kiln::autograd::backward(loss);
  w.opt->step();
  w.opt->zero_grad();
  return loss.item();
}

}  // namespace

// The region callgrind counts: kept out of line and with C linkage so its name is stable.
extern "C" __attribute__((noinline)) double callgrind_measured_steps(Workload* w, int steps) {
  double loss = 0;
  for (int s = 0; s < steps; ++s) loss = train_step(*w);
  return loss;
}

int main(int argc, char** argv) {
  using namespace kiln;
  if (argc < 2) {
    std::fprintf(stderr, "usage: callgrind_step mlp|cnn [steps]\n");
    return 2;
  }
  const std::string name = argv[1];
  const int steps = argc > 2 ? std::atoi(argv[2]) : 3;
  if (name != "mlp" && name != "cnn") {
    std::fprintf(stderr, "callgrind_step: model is mlp or cnn, got %s\n", name.c_str());
    return 2;
  }
  set_num_threads(1);
  // Timing-based tuning would make the work (and the count) depend on the machine's mood.
  ops::cpu::set_tune_mode(ops::cpu::TuneMode::off);

  constexpr int64_t kBatch = 16;
  nn::ModelSpec spec;
  spec.name = name;
  Workload w;
  w.model = nn::make_model(spec, 1);
  w.opt = optim::make_adam(w.model->parameters(), optim::AdamOptions{});
  Generator gen(2);
  w.input = randn({kBatch, 1, 28, 28}, gen);
  w.target = ops::clamp(ops::to(ops::mul(rand({kBatch}, gen), 10.0), DType::i64), 0, 9);

  for (int s = 0; s < 2; ++s) train_step(w);
  double loss = callgrind_measured_steps(&w, steps);
  std::printf("{\"bench\": \"callgrind_step\", \"model\": \"%s\", \"batch\": %lld, \"steps\": %d, \"loss\": %.6f}\n",
              name.c_str(), static_cast<long long>(kBatch), steps, loss);
  return 0;
}
