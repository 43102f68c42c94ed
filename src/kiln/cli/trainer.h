// The training loop behind `kiln train`: data, model, optimiser and schedule from a config;
// per-epoch evaluation, metrics (metrics.jsonl + TensorBoard), checkpoints that resume exactly.
#pragma once

#include <string>

#include "kiln/cli/config.h"
#include "kiln/cli/task.h"
#include "kiln/data/data_loader.h"
#include "kiln/optim/optimizer.h"

namespace kiln::cli {

struct TrainOptions {
  std::string out_dir = "runs/latest";
  bool resume = false;  // continue from out_dir/checkpoint.safetensors
};

struct TrainSummary {
  std::string model;
  int64_t epochs = 0;
  int64_t steps = 0;
  double train_loss = 0.0;
  double test_loss = 0.0;
  double test_accuracy = 0.0;
  double rate = 0.0;  // samples per second over the last epoch
  std::string unit;   // "images" or "tokens"
  std::string checkpoint;
  double seconds = 0.0;
  // Distributed runs.
  int64_t world_size = 1;
  double allreduce_seconds = 0.0;          // communication-thread time reducing gradients
  double allreduce_exposed_seconds = 0.0;  // of which the steps waited for after backward
  int64_t bytes_sent = 0;                  // by this rank
  double staleness_mean = 0.0;
  int64_t optimizer_state_bytes = 0;       // this rank's optimiser state (sharded under ZeRO)             // ps: mean staleness of the pushes (rank 0)
};

TrainSummary train(const TrainConfig& config, const TrainOptions& options);

// The checkpoint file inside a run directory.
std::string checkpoint_path(const std::string& out_dir);

// Shared by the training loops (trainer.cpp; train_ps.cpp and train_fedavg.cpp for the
// strategies with loops of their own).
std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& c, std::vector<Tensor> params);
data::LoaderOptions loader_options(const TrainConfig& c);  // batch, shuffle, drop_last, workers, seed
TrainSummary start_summary(const TrainConfig& c, const Task& task, const std::string& out_dir, int world_size);

}  // namespace kiln::cli
