// Datasets: indexable collections of examples. A batch is built by get_batch(), which the image
// and text datasets override to copy rows straight into one batch tensor.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::data {

struct Example {
  Tensor input;   // e.g. (1, 28, 28) f32 image, or (T) i64 token ids
  Tensor target;  // e.g. () i64 class, or (T) i64 next tokens
};

struct Batch {
  Tensor input;   // (B, ...) stacked inputs
  Tensor target;  // (B, ...) stacked targets
  std::vector<int64_t> indices;  // which dataset examples, in batch order
  // Set by a sharded DataLoader: each example's position in its whole batch (empty: 0..B-1, the
  // batch is whole) and the examples per shard, in order.
  std::vector<int64_t> positions;
  std::vector<int64_t> shard_sizes;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Example get(int64_t index) const = 0;
  // Default: stacks get(i); datasets backed by one tensor override it to copy rows directly.
  virtual Batch get_batch(const std::vector<int64_t>& indices) const;
};

using DatasetPtr = std::shared_ptr<const Dataset>;

}  // namespace kiln::data
