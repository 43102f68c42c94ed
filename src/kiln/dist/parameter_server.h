// Parameter server (dist.strategy = "ps", Li et al. 2014): the first `servers` ranks hold the
// parameters in a key-value store and run the optimiser; the other ranks are workers that
// compute gradients on their own data, push them to the servers and pull fresh parameters.
//
// Keys are (parameter, shard): every parameter is cut into one contiguous shard per server, so
// each server owns a slice of every tensor and the load is even. Each shard has its own
// optimiser state on its server (an optimiser over the server's shard tensors).
//
// Consistency models (Ho et al. 2013):
//   bsp  bulk synchronous: a server waits for every worker's gradient of clock c, applies their
//        mean once (summed in worker order: deterministic) and answers everyone. The same
//        updates as synchronous data parallelism.
//   asp  asynchronous: every push is applied on arrival and answered at once.
//   ssp  stale synchronous (bound s): pushes are applied on arrival, but a worker at clock c
//        gets its answer only when the slowest active worker has reached clock c - s.
// A push's staleness is the number of updates the server applied between the parameters the
// worker computed on and this push; servers keep a histogram of it.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/dist/communicator.h"
#include "kiln/dist/compression.h"
#include "kiln/optim/optimizer.h"

namespace kiln::dist {

struct PsOptions {
  int servers = 1;
  std::string mode = "bsp";  // bsp | asp | ssp
  int64_t staleness = 2;     // ssp bound
  // Pushed gradients compressed with error feedback on the worker (compression.h); parameters
  // come back dense.
  std::string compression = "none";  // none | topk | int8
  double topk_ratio = 0.01;
  int64_t topk_warmup = 0;
};

// Where each (parameter, shard) lives in a server's flat buffer.
class PsLayout {
 public:
  PsLayout(const std::vector<int64_t>& param_sizes, int servers);
  int servers() const { return servers_; }
  int64_t params() const { return static_cast<int64_t>(sizes_.size()); }
  // Elements [lo, hi) of parameter p are held by server s ...
  int64_t shard_lo(int64_t p, int s) const { return sizes_[static_cast<size_t>(p)] * s / servers_; }
  int64_t shard_hi(int64_t p, int s) const { return sizes_[static_cast<size_t>(p)] * (s + 1) / servers_; }
  // ... at this offset of server s's flat buffer, which holds server_size(s) values.
  int64_t offset(int64_t p, int s) const { return offsets_[static_cast<size_t>(s)][static_cast<size_t>(p)]; }
  int64_t server_size(int s) const { return totals_[static_cast<size_t>(s)]; }

 private:
  std::vector<int64_t> sizes_;
  int servers_;
  std::vector<std::vector<int64_t>> offsets_;
  std::vector<int64_t> totals_;
};

using OptimizerFactory = std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>;

// A consistent point for a checkpoint: every worker has sent a checkpoint barrier (at the same
// clock, a multiple of train.checkpoint_every) and waits. position[w] is what worker w sent with
// it (its data loader's position, opaque to the server).
struct PsSnapshot {
  int64_t version = 0;
  std::vector<int64_t> clocks, positions;
};

// Runs on a server rank until every worker has said it is done.
class ParameterServer {
 public:
  ParameterServer(Communicator& comm, const std::vector<Tensor>& initial_params, PsOptions options,
                  const OptimizerFactory& make_optimizer);
  // Called at every checkpoint barrier, before the waiting workers get their answers.
  using SnapshotFn = std::function<void(const ParameterServer&, const PsSnapshot&)>;
  void run(const SnapshotFn& on_snapshot = nullptr);
  // Resuming: the updates already applied (the store's values come from initial_params).
  void set_version(int64_t v) { version_ = v; }
  optim::Optimizer& optimizer() const { return *optimizer_; }
  const std::map<int64_t, int64_t>& staleness_histogram() const { return histogram_; }
  int64_t updates() const { return version_; }
  // The most clocks a worker was ahead of the slowest active worker when it got an answer
  // (bounded by s under ssp, 0 under bsp).
  int64_t max_lead() const { return max_lead_; }
  // The server's shards of parameter p (flat), for assembling the model on rank 0.
  const Tensor& buffer() const { return values_; }
  const PsLayout& layout() const { return layout_; }

 private:
  void apply(const float* grad, double scale);
  void reply(int worker);

  Communicator& comm_;
  PsOptions options_;
  PsLayout layout_;
  Tensor values_;                 // (server_size) this server's shards, flat
  std::vector<Tensor> keys_;      // one tensor per (parameter, this shard), viewing values_
  std::unique_ptr<optim::Optimizer> optimizer_;
  int64_t version_ = 0;           // updates applied
  int64_t max_lead_ = 0;
  std::map<int64_t, int64_t> histogram_;  // staleness -> pushes
};

// A worker's side: pushes its gradients to every server and installs what they send back.
class PsWorker {
 public:
  PsWorker(Communicator& comm, std::vector<Tensor> params, PsOptions options);
  // Sends this step's gradients (params' .grad) and blocks until the servers answer with
  // parameters; copies them into params. clock: this worker's step count.
  void push_pull(int64_t clock);
  // Waits with every other worker at a checkpoint (clock: this worker's step count, position: a
  // value the snapshot records for it, e.g. its loader position); returns with the parameters.
  void checkpoint_barrier(int64_t clock, int64_t position);
  void finish();  // tells the servers this worker is done

 private:
  Communicator& comm_;
  std::vector<Tensor> params_;
  PsOptions options_;
  PsLayout layout_;
  std::vector<std::vector<float>> residuals_;  // per server, with compression
  int64_t pushes_ = 0;
  void install(const std::vector<Tensor>& in);  // the servers' answers into params
};

// A push on the wire: an int64 clock (-1: the worker is done, -3: a checkpoint barrier whose
// payload starts with the worker's clock and position), then the gradient shard, dense f32
// or encoded. Its size depends on how many pushes the worker made before (top-k warm-up).
int64_t push_bytes(const PsOptions& options, int64_t n, int64_t exchange);

// The server rank whose store holds the whole model at the end (rank 0) collects the other
// servers' shards into `params` (a collective among servers only).
void gather_to_first_server(Communicator& comm, const ParameterServer& server, const std::vector<Tensor>& params);

}  // namespace kiln::dist
