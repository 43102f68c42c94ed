// Times the `cnn` reference model's layers at batch 128, forward and backward separately, and a
// whole training step (fwd + bwd, no optimiser) built from the functional ops. Prints one JSON
// object per figure. Usage: conv_step [iterations] [batch] [step]  ("step": only the whole step)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "kiln/autograd/engine.h"
#include "kiln/core/grad_mode.h"
#include "kiln/core/rng.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/ops.h"

using namespace kiln;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median-free but warm: one untimed run, then the mean of `iters` runs.
double time_ms(int iters, const std::function<void()>& fn) {
  fn();
  double t0 = now_ms();
  for (int i = 0; i < iters; ++i) fn();
  return (now_ms() - t0) / iters;
}

void report(const std::string& name, double ms, int64_t batch) {
  std::printf("{\"bench\": \"conv_step\", \"figure\": \"%s\", \"ms\": %.3f, \"batch\": %lld, \"threads\": %d}\n",
              name.c_str(), ms, static_cast<long long>(batch), get_num_threads());
}

// Forward, and backward from a fixed output gradient, of one layer.
void time_layer(const std::string& name, int iters, int64_t batch, Tensor x, std::vector<Tensor> params,
                const std::function<Tensor(const Tensor&)>& f, bool input_grad) {
  Generator g(1);
  if (input_grad) x.set_requires_grad(true);
  for (auto& p : params) p.set_requires_grad(true);
  Tensor y;
  {
    NoGradGuard ng;
    report(name + "_fwd", time_ms(iters, [&] { y = f(x); }), batch);
  }
  Tensor gout = randn(y.shape(), g);
  report(name + "_fwd_bwd", time_ms(iters, [&] {
           Tensor out = f(x);
           autograd::backward({out}, {gout});
         }),
         batch);
}

}  // namespace

int main(int argc, char** argv) {
  const int iters = argc > 1 ? std::atoi(argv[1]) : 20;
  const int64_t B = argc > 2 ? std::atoll(argv[2]) : 128;
  Generator g(0);
  auto param = [&](const Shape& s, double scale) { return ops::mul(randn(s, g), scale).detach(); };
  Tensor w1 = param({32, 1, 3, 3}, 0.3), b1 = param({32}, 0.1);
  Tensor w2 = param({64, 32, 3, 3}, 0.05), b2 = param({64}, 0.1);
  Tensor w3 = param({128, 1600}, 0.02), b3 = param({128}, 0.1);
  Tensor w4 = param({10, 128}, 0.1), b4 = param({10}, 0.1);
  Tensor x = randn({B, 1, 28, 28}, g);
  Tensor target = Tensor::empty({B}, DType::i64);
  for (int64_t i = 0; i < B; ++i) target.data<int64_t>()[i] = i % 10;

  const bool only_step = argc > 3 && std::string(argv[3]) == "step";
  if (!only_step) {
  time_layer("conv1", iters, B, x, {w1, b1}, [&](const Tensor& t) { return ops::conv2d(t, w1, b1); }, false);
  time_layer("relu_pool1", iters, B, randn({B, 32, 26, 26}, g), {},
             [](const Tensor& t) { return ops::max_pool2d(ops::relu(t), {2, 2}); }, true);
  time_layer("conv2", iters, B, randn({B, 32, 13, 13}, g), {w2, b2},
             [&](const Tensor& t) { return ops::conv2d(t, w2, b2); }, true);
  time_layer("relu_pool2", iters, B, randn({B, 64, 11, 11}, g), {},
             [](const Tensor& t) { return ops::max_pool2d(ops::relu(t), {2, 2}); }, true);
  time_layer("fc", iters, B, randn({B, 1600}, g), {w3, b3, w4, b4},
             [&](const Tensor& t) { return ops::linear(ops::relu(ops::linear(t, w3, b3)), w4, b4); }, true);
  time_layer("cross_entropy", iters, B, randn({B, 10}, g), {},
             [&](const Tensor& t) { return ops::cross_entropy(t, target); }, true);
  }

  for (Tensor* p : {&w1, &b1, &w2, &b2, &w3, &b3, &w4, &b4}) p->set_requires_grad(true);
  auto step = [&] {
    Tensor h = ops::max_pool2d(ops::relu(ops::conv2d(x, w1, b1)), {2, 2});
    h = ops::max_pool2d(ops::relu(ops::conv2d(h, w2, b2)), {2, 2});
    h = ops::linear(ops::relu(ops::linear(ops::flatten(h, 1), w3, b3)), w4, b4);
    autograd::backward(ops::cross_entropy(h, target));
    for (Tensor* p : {&w1, &b1, &w2, &b2, &w3, &b3, &w4, &b4}) p->set_grad(Tensor());
  };
  double ms = time_ms(iters, step);
  report("cnn_train_step", ms, B);
  std::printf("{\"bench\": \"conv_step\", \"figure\": \"cnn_images_per_s\", \"value\": %.1f, \"batch\": %lld}\n",
              1000.0 * static_cast<double>(B) / ms, static_cast<long long>(B));
  return 0;
}
