// Pipeline parallelism (dist.strategy = "pipeline"): a Sequential model cut into contiguous
// stages, one per rank. A batch is split into m micro-batches; activations flow forward from
// stage to stage and their gradients flow back, by point-to-point messages. Two schedules:
//
//   gpipe (fill-drain, Huang et al. 2019): every micro-batch's forward, then every backward.
//         A stage holds the activations of all m micro-batches at once.
//   1f1b  (PipeDream-flush, Narayanan et al. 2019): stage s runs p - s - 1 forwards to fill the
//         pipe, then alternates one forward and one backward, then drains. At most p - s
//         micro-batches are in flight on stage s: less activation memory, the same bubble.
//
// Both leave an idle "bubble" of (p - 1) / (m + p - 1) of the step when stages cost the same.
// Each micro-batch's loss is weighted by its share of the batch, so the gradients accumulated
// over the micro-batches are the whole batch's (equal to the unsplit model's up to rounding).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kiln/dist/communicator.h"
#include "kiln/nn/sequential.h"

namespace kiln::dist {

struct PipelineOptions {
  int64_t micro_batches = 4;
  std::string schedule = "1f1b";  // gpipe | 1f1b
  // Where stages 1.. start, as layer indices (stages - 1 increasing values); empty: chosen to
  // balance the per-layer cost measured on rank 0.
  std::vector<int64_t> split;
};

struct PipelineStats {
  double step_seconds = 0.0;
  double busy_seconds = 0.0;          // forward and backward compute on this stage
  int64_t peak_in_flight = 0;         // micro-batches forwarded and not yet backwarded, at most
  int64_t peak_activation_bytes = 0;  // allocator peak above the step's start, on this stage
  double bubble() const { return step_seconds > 0 ? 1.0 - busy_seconds / step_seconds : 0.0; }
};

// Contiguous split of layers with costs `costs` into `stages` parts minimising the largest part's
// cost; returns the first layer of each part after the first. Every part gets at least one layer.
std::vector<int64_t> balanced_split(const std::vector<double>& costs, int stages);

class Pipeline {
 public:
  using LossFn = std::function<Tensor(const Tensor& logits, const Tensor& target)>;

  // Every rank passes the whole model (built from the same seed) and the shape of one input
  // example; rank r keeps stage r. Errors (more stages than layers, a bad split) on every rank.
  Pipeline(Communicator& comm, std::shared_ptr<nn::Sequential> model, const Shape& example_shape,
           PipelineOptions options = {});

  int stage() const { return comm_.rank(); }
  int stages() const { return comm_.size(); }
  int64_t first_layer() const { return bounds_[static_cast<size_t>(stage())]; }
  int64_t end_layer() const { return bounds_[static_cast<size_t>(stage()) + 1]; }
  const std::vector<int64_t>& bounds() const { return bounds_; }  // stage s holds [bounds[s], bounds[s+1])
  std::vector<Tensor> parameters() const;  // this stage's

  // Forward and backward of one batch (input and target whole on every rank; the first stage
  // reads the input, the last the target). Leaves this stage's gradients in .grad and returns
  // the batch's mean loss on every rank.
  double step(const Tensor& input, const Tensor& target, const LossFn& loss);
  const PipelineStats& last_stats() const { return stats_; }

  // Copies every stage's parameters and buffers into the whole model on every rank (for
  // evaluation and checkpoints).
  void synchronize_model();

 private:
  Tensor forward_layers(const Tensor& x) const;
  std::vector<int64_t> measure_split(const Shape& example_shape);

  Communicator& comm_;
  std::shared_ptr<nn::Sequential> model_;
  PipelineOptions options_;
  std::vector<int64_t> bounds_;
  std::vector<Shape> boundary_shapes_;  // per-example shape entering layer bounds_[s], s = 0..p
  PipelineStats stats_;
};

}  // namespace kiln::dist
