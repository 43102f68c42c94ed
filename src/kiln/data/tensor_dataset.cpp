// TensorDataset: rows of two in-memory tensors, gathered into batches with one memcpy per row.
#include "kiln/data/tensor_dataset.h"

#include <cstring>

namespace kiln::data {

TensorDataset::TensorDataset(Tensor inputs, Tensor targets) {
  KILN_CHECK(inputs.defined() && targets.defined(), "TensorDataset: inputs and targets must be defined");
  KILN_CHECK(inputs.dim() >= 1 && targets.dim() >= 1, "TensorDataset: inputs ", inputs.str(), " and targets ",
             targets.str(), " need a leading example dimension");
  KILN_CHECK(inputs.size(0) == targets.size(0), "TensorDataset: inputs have ", inputs.size(0),
             " examples but targets have ", targets.size(0), " (", inputs.str(), " vs ", targets.str(), ")");
  inputs_ = contiguous_raw(inputs.detach());
  targets_ = contiguous_raw(targets.detach());
}

Example TensorDataset::get(int64_t index) const {
  KILN_CHECK_INDEX(index >= 0 && index < size(), "TensorDataset::get: index ", index, " out of range for ",
                   size(), " examples");
  Batch b = get_batch({index});
  Shape in_shape(inputs_.shape().begin() + 1, inputs_.shape().end());
  Shape tg_shape(targets_.shape().begin() + 1, targets_.shape().end());
  return {b.input.as_strided(in_shape, contiguous_strides(in_shape), 0),
          b.target.as_strided(tg_shape, contiguous_strides(tg_shape), 0)};
}

Batch TensorDataset::get_batch(const std::vector<int64_t>& indices) const {
  Batch b;
  b.input = gather_rows(inputs_, indices);
  b.target = gather_rows(targets_, indices);
  b.indices = indices;
  return b;
}

Tensor gather_rows(const Tensor& src, const std::vector<int64_t>& indices) {
  KILN_ASSERT(src.is_contiguous());
  const int64_t n = src.size(0);
  Shape shape = src.shape();
  shape[0] = static_cast<int64_t>(indices.size());
  for (int64_t r : indices)
    KILN_CHECK_INDEX(r >= 0 && r < n, "get_batch: index ", r, " out of range for ", n, " examples");
  Tensor out = Tensor::empty(shape, src.dtype());
  const size_t row_bytes = static_cast<size_t>(n == 0 ? 0 : src.numel() / n) * element_size(src.dtype());
  if (row_bytes == 0) return out;
  const char* from = static_cast<const char*>(src.raw_data());
  char* to = static_cast<char*>(out.raw_data());
  for (size_t i = 0; i < indices.size(); ++i) {
    std::memcpy(to + i * row_bytes, from + static_cast<size_t>(indices[i]) * row_bytes, row_bytes);
  }
  return out;
}

}  // namespace kiln::data
