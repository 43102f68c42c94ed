// Pipeline-parallel bubble and activation memory, GPipe vs 1F1B, against the (p - 1) / (m + p - 1)
// prediction. Run under MPI, one stage per rank:
//   mpirun -np 2 build/bench/pipeline_bench [steps]
// Two models at batch 128, 1 thread per rank, the split chosen by measured layer cost: a
// "balanced" MLP of eight equal 512-wide Linear+ReLU blocks (stages can cost the same, the
// prediction's assumption) and the cnn (one convolution is most of its cost, so two stages
// cannot be balanced and the lighter stage idles beyond the prediction). For each
// schedule and m in {2, 4, 8}: the bubble per stage, 1 - (forward + backward compute) / step
// time, its mean over stages (median over steps), and the peak number of micro-batches in
// flight and the allocator's peak bytes above the step's start on stage 0. Rank 0 prints one
// JSON object per configuration.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "kiln/core/rng.h"
#include "kiln/core/thread_pool.h"
#include "kiln/dist/communicator.h"
#include "kiln/dist/pipeline.h"
#include "kiln/nn/activation.h"
#include "kiln/nn/linear.h"
#include "kiln/nn/models.h"
#include "kiln/ops/ops.h"

using namespace kiln;

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 20;
  set_num_threads(1);
  dist::Communicator& comm = dist::world();
  const int p = comm.size();
  Generator gen(5);
  Tensor x = randn({128, 1, 28, 28}, gen);
  std::vector<int64_t> labels(128);
  for (int64_t i = 0; i < 128; ++i) labels[static_cast<size_t>(i)] = i % 10;
  Tensor y = Tensor::from_vector(labels);
  // The balanced MLP ends in 512 features: cross-entropy over 512 classes, labels 0..9 of them.
  auto loss = [](const Tensor& logits, const Tensor& target) { return ops::cross_entropy(logits, target); };

  for (const char* model_name : {"balanced_mlp", "cnn"}) {
  std::shared_ptr<nn::Sequential> model;
  if (std::string(model_name) == "cnn") {
    nn::ModelSpec spec;
    spec.name = "cnn";
    model = std::dynamic_pointer_cast<nn::Sequential>(nn::make_model(spec, 1));
  } else {
    Generator init(1);
    model = std::make_shared<nn::Sequential>();
    model->add(std::make_shared<nn::Flatten>());
    model->add(std::make_shared<nn::Linear>(784, 512, init));
    for (int i = 0; i < 7; ++i) {
      model->add(std::make_shared<nn::ReLU>());
      model->add(std::make_shared<nn::Linear>(512, 512, init));
    }
  }
  std::vector<int64_t> split;
  for (const char* schedule : {"gpipe", "1f1b"})
    for (int64_t m : {2, 4, 8}) {
      dist::Pipeline pipe(comm, model, {1, 28, 28}, {m, schedule, split});
      if (split.empty()) split.assign(pipe.bounds().begin() + 1, pipe.bounds().end() - 1);  // one split for all
      std::vector<double> bubbles;
      dist::PipelineStats s0;
      for (int step = 0; step < steps + 3; ++step) {
        pipe.step(x, y, loss);
        for (auto& prm : model->parameters()) prm.set_grad(Tensor());
        // Mean bubble over stages, gathered on every rank.
        Tensor b = Tensor::full({1}, pipe.last_stats().bubble() / p, DType::f64);
        comm.allreduce(b, dist::ReduceOp::sum)->wait();
        if (step >= 3) bubbles.push_back(b.item());  // the first steps warm caches and the tuner
        s0 = pipe.last_stats();
      }
      std::nth_element(bubbles.begin(), bubbles.begin() + bubbles.size() / 2, bubbles.end());
      if (comm.rank() == 0) {
        nlohmann::json j = {{"model", model_name},
                            {"schedule", schedule},
                            {"stages", p},
                            {"micro_batches", m},
                            {"bubble_measured", bubbles[bubbles.size() / 2]},
                            {"bubble_predicted", double(p - 1) / double(m + p - 1)},
                            {"stage0_peak_in_flight", s0.peak_in_flight},
                            {"stage0_peak_activation_mib", double(s0.peak_activation_bytes) / (1 << 20)},
                            {"split", split}};
        std::printf("%s\n", j.dump().c_str());
        std::fflush(stdout);
      }
    }
  }
  dist::shutdown();
  return 0;
}
