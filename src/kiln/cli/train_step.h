// How one batch becomes this rank's gradients, per distribution strategy: data parallel (also
// the plain single process: one rank, one shard) or pipeline. The trainer (trainer.cpp) owns
// the loop, the optimiser, evaluation and checkpoints; a GradientStep owns what differs.
#pragma once

#include <fstream>
#include <memory>
#include <optional>

#include "kiln/cli/config.h"
#include "kiln/cli/task.h"
#include "kiln/data/data_loader.h"
#include "kiln/dist/communicator.h"
#include "kiln/nn/module.h"

namespace kiln::cli {

struct StepTotals {
  double allreduce_seconds = 0.0;
  double allreduce_exposed_seconds = 0.0;
  double bubble_sum = 0.0;  // pipeline: sum over steps of this stage's bubble fraction
  int64_t steps = 0;
};

class GradientStep {
 public:
  virtual ~GradientStep() = default;
  // Which examples of each batch this rank loads.
  virtual void configure_loader(data::LoaderOptions&) const {}
  // The parameters this rank's optimiser updates.
  virtual std::vector<Tensor> trained_parameters() const = 0;
  // Computes batch `batch`'s gradients (whole: its size before sharding; micro: its index in
  // the optimiser step, which ends after it when step_ends) and returns its mean loss, the same
  // on every rank.
  virtual double run(const data::Batch& batch, int64_t whole, int64_t micro, bool step_ends, int64_t step) = 0;
  // Clips the step's gradients by their global norm (over the whole model, wherever its parts
  // live); returns that norm.
  virtual double clip_gradients(const std::vector<Tensor>& params, double max_norm);
  // Pipeline: the stage starts in use, as dist.split text ("3,6"); a resumed run must reuse it,
  // since each stage's optimiser state belongs to its layers. Empty for other strategies.
  virtual std::string split() const { return ""; }
  // After the optimiser's step (ZeRO: gathers the updated parameter blocks).
  virtual void after_update() {}
  // Makes the whole model current on every rank (before evaluation and checkpoints).
  virtual void gather_model() {}
  // False when this rank's optimiser holds only part of the state (the checkpoint then carries
  // no optimiser state and cannot be resumed).
  virtual bool whole_optimizer() const { return true; }
  const StepTotals& totals() const { return totals_; }

 protected:
  StepTotals totals_;
};

std::unique_ptr<GradientStep> make_gradient_step(const TrainConfig& c, dist::Communicator& comm, nn::ModulePtr model,
                                                 const Task& task, const std::string& out_dir);

}  // namespace kiln::cli
