// DataLoader: shuffled (seeded), batched, prefetched by worker threads. The order of an epoch is a
// pure function of (seed, epoch), and the loader's position is (epoch, next batch), so a
// checkpoint can resume mid-epoch with exactly the same batches. Workers only prepare batches
// ahead; the batches come out in order regardless of how many workers run.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "kiln/data/dataset.h"

namespace kiln::data {

struct LoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = true;
  bool drop_last = false;
  int num_workers = 1;  // threads preparing batches ahead (0 = prepare in next())
  int prefetch = 2;     // batches prepared ahead per worker
  uint64_t seed = 0;
  // Data-parallel sharding: every batch is cut into shard_count contiguous shards (shard s holds
  // positions [s*n/S, (s+1)*n/S) of a batch of n examples) and this loader hands out only the
  // listed shards, concatenated in the listed order (Batch::shard_sizes says where each ends).
  // Empty `shards`: whole batches. The epoch order and augmentation do not depend on it, so the
  // union over ranks of their shards is exactly the unsharded epoch.
  int64_t shard_count = 1;
  std::vector<int64_t> shards;
  // Optional per-batch transform (augmentation) applied in the worker, with a generator seeded
  // from (seed, epoch, batch index) so it is deterministic.
  std::function<void(Batch&, uint64_t batch_seed)> transform;
};

struct LoaderState {
  int64_t epoch = 0;
  int64_t batch = 0;  // next batch to hand out within the epoch
};

class DataLoader {
 public:
  DataLoader(DatasetPtr dataset, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  void set_state(LoaderState s);  // positions the loader (e.g. after resume)
  LoaderState state() const;
  // The next batch of the current epoch, or nullopt at its end (then state().epoch advances and
  // state().batch resets to 0).
  std::optional<Batch> next();
  int64_t batches_per_epoch() const;
  const Dataset& dataset() const { return *dataset_; }

 private:
  struct Impl;
  DatasetPtr dataset_;
  std::unique_ptr<Impl> impl_;
};

// The order of examples in `epoch`: a Fisher-Yates shuffle driven by a Generator seeded from
// (seed, epoch), or 0..n-1 when !shuffle. Exposed so tests and tools can reproduce it.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle = true);
// The seed handed to LoaderOptions::transform for batch `batch` of `epoch`.
uint64_t batch_seed(uint64_t seed, int64_t epoch, int64_t batch);

}  // namespace kiln::data
