// Data-parallel training (dist.strategy = "ddp"): every rank holds the whole model, computes
// gradients on its part of each global batch, and the ranks sum their gradients before each
// optimiser step.
//
// Bitwise reproducibility. The global batch is cut into S data shards (S = dist.shards, default
// the world size). The gradient of a step is defined as T(S) (tree_reduce.h) over the shards'
// gradients, each shard's loss weighted by its share of the batch. Rank r of N computes shards
// r, r + N, r + 2N, ... (L = S / N of them), sums them with T(L), and the ranks' partial sums
// meet in the distributed T(N): the same expression as one process computing all S shards in
// turn, so N ranks and one process with the same S give the same bits. S must be a power of two
// or equal to N. Gradient accumulation folds each shard's micro-steps in order before the tree.
//
// Compression (dist.compression = topk | int8) replaces each bucket's allreduce with a
// compressed exchange (compression.h); the result is then no longer the bits of one process.
//
// Overlap. Gradients are packed, last layer first, into buckets of about dist.bucket_mb. During
// the last backward of a step, a bucket's allreduce is posted as soon as its last gradient is
// accumulated (autograd's grad-ready hook), so the communication thread sends early layers'
// buckets while backward still computes the later ones (the overlap of PyTorch DDP / Poseidon).
#pragma once

#include <chrono>
#include <memory>
#include <unordered_map>
#include <vector>

#include "kiln/autograd/engine.h"
#include "kiln/dist/communicator.h"
#include "kiln/dist/compression.h"
#include "kiln/nn/module.h"

namespace kiln::dist {

struct DataParallelOptions {
  int64_t shards = 0;              // S: data shards per global batch (0: the world size)
  int64_t bucket_bytes = 1 << 18;  // gradient bytes per allreduce bucket
  bool overlap = true;             // false: reduce only after backward ends (the baseline for overlap)
  std::string compression = "none";  // none | topk | int8 (compression.h)
  double topk_ratio = 0.01;
  int64_t topk_warmup = 0;  // steps of density warm-up (25% down to topk_ratio)
  // ZeRO stage 1 (Rajbhandari et al. 2020): the optimiser state is sharded. Buckets are
  // reduce-scattered instead of allreduced, each rank's optimiser updates only its block of the
  // parameters (shard_parameters()), and after_update() allgathers the blocks. Adam and SGD are
  // elementwise, so the result is bit for bit that of plain data parallelism.
  bool zero = false;
};

// One step's reduction, for the overlap figure: hidden = 1 - exposed / reduce.
struct OverlapStats {
  double reduce_seconds = 0.0;   // communication-thread time spent reducing the step's buckets
  double exposed_seconds = 0.0;  // time the step waited for reductions after backward ended
  int64_t buckets = 0;
  // steady_clock (CLOCK_MONOTONIC) seconds when the last backward ended and when the reduction
  // was complete: comparable between the ranks of one machine, which is how the overlap
  // benchmark separates communication from load imbalance between ranks.
  double backward_end = 0.0, reduced = 0.0;
};

class DataParallel {
 public:
  DataParallel(Communicator& comm, std::vector<Tensor> params, DataParallelOptions options = {});
  ~DataParallel();

  int64_t shard_count() const { return shards_; }
  // The global shard ids this rank computes, in the order it computes them.
  const std::vector<int64_t>& local_shards() const { return local_shards_; }
  int64_t bucket_count() const { return static_cast<int64_t>(buckets_.size()); }

  // Makes every rank's tensors equal to rank 0's (parameters and buffers at start). Blocking.
  void broadcast_from_root(const std::vector<Tensor>& tensors);

  // Around the backward of local shard j (index into local_shards()). first_micro: the first
  // accumulation micro-step of this optimiser step (the shard's accumulator restarts). last: the
  // last backward before the optimiser step; its buckets are reduced while it runs, and
  // end_backward() returns with every parameter's .grad set to the step's summed gradient. An
  // empty shard calls the pair with no backward between (it contributes zeros).
  void begin_backward(int64_t j, bool first_micro, bool last);
  void end_backward();

  const OverlapStats& last_step() const { return stats_; }

  bool zero() const { return zero_; }
  // ZeRO: the tensors this rank's optimiser owns (one block per bucket); their .grad is set by
  // end_backward() of the last backward. Call after_update() after the optimiser's step.
  const std::vector<Tensor>& shard_parameters() const { return shard_params_; }
  void after_update();

 private:
  struct Param {
    Tensor tensor;
    int64_t offset = 0, numel = 0, bucket = 0;
  };
  struct Bucket {
    int64_t lo = 0, hi = 0;  // element range in the flat gradient
    int64_t padded = 0;      // hi - lo, rounded up to a multiple of the world size under ZeRO
    int64_t params = 0;      // parameters in it
    int64_t pending = 0;     // still waiting for their gradient in the last backward
    WorkHandle work;
  };
  void take_gradient(Param& p, bool from_hook);
  void launch_ready_buckets();
  void finish_step();

  Communicator& comm_;
  int64_t shards_ = 1;
  bool overlap_ = true;
  bool zero_ = false;
  std::vector<Tensor> shard_params_, shard_grads_;  // ZeRO: this rank's block of each bucket
  std::vector<int64_t> local_shards_;
  std::vector<Param> params_;  // in bucket order: the model's last parameters first
  std::unordered_map<const TensorImpl*, size_t> index_;
  std::vector<Bucket> buckets_;
  std::vector<Tensor> acc_;  // (numel_total) f32 per local shard: its gradients, accumulated
  std::vector<bool> taken_;  // per parameter, in the current backward
  int64_t current_ = 0;
  bool first_micro_ = true, last_backward_ = false;
  size_t next_launch_ = 0;
  std::unique_ptr<autograd::GradReadyHookGuard> hook_;
  std::unique_ptr<GradientCompressor> compressor_;  // null: dense allreduce
  std::chrono::steady_clock::time_point backward_returned_;
  OverlapStats stats_;
};

// Gives every Dropout in `model` the random stream numbered `stream` (a data shard's own), so a
// shard draws the same masks whichever rank computes it.
void set_dropout_stream(nn::Module& model, uint64_t stream);

}  // namespace kiln::dist
