// TensorDataset: examples are the rows of two tensors, inputs (N, ...) and targets (N, ...).
// get_batch copies the chosen rows straight into the batch tensors (no per-example tensors).
#pragma once

#include "kiln/data/dataset.h"

namespace kiln::data {

class TensorDataset : public Dataset {
 public:
  // Both tensors are made contiguous once here; they must agree on N (dimension 0).
  TensorDataset(Tensor inputs, Tensor targets);

  int64_t size() const override { return inputs_.size(0); }
  Example get(int64_t index) const override;  // fresh copies of row `index`
  Batch get_batch(const std::vector<int64_t>& indices) const override;

  const Tensor& inputs() const { return inputs_; }    // (N, ...)
  const Tensor& targets() const { return targets_; }  // (N, ...)

 private:
  Tensor inputs_;
  Tensor targets_;
};

// Copies rows `indices` of a contiguous (N, ...) tensor into a new (B, ...) tensor.
Tensor gather_rows(const Tensor& src, const std::vector<int64_t>& indices);

}  // namespace kiln::data
