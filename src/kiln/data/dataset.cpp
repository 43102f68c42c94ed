// The default Dataset::get_batch: fetch each example and stack inputs and targets row by row.
#include "kiln/data/dataset.h"

#include <cstring>

namespace kiln::data {

namespace {

// Copies `rows[i]` into row i of a new (B, ...) tensor; every row must share shape and dtype.
Tensor stack_rows(const std::vector<Tensor>& rows, const char* what) {
  KILN_CHECK(!rows.empty(), "get_batch: empty batch");
  const Tensor& first = rows[0];
  Shape shape = first.shape();
  shape.insert(shape.begin(), static_cast<int64_t>(rows.size()));
  Tensor out = Tensor::empty(shape, first.dtype());
  const int64_t row_numel = first.numel();
  const size_t row_bytes = static_cast<size_t>(row_numel) * element_size(first.dtype());
  Strides row_strides = contiguous_strides(first.shape());
  for (size_t i = 0; i < rows.size(); ++i) {
    const Tensor& r = rows[i];
    KILN_CHECK(r.shape() == first.shape() && r.dtype() == first.dtype(), "get_batch: example ", i, " ", what,
               " is ", r.str(), " but example 0 is ", first.str(), " (examples in a batch must match)");
    Tensor dst = out.as_strided(first.shape(), row_strides, static_cast<int64_t>(i) * row_numel);
    if (row_bytes == 0) continue;
    if (r.is_contiguous())
      std::memcpy(dst.raw_data(), r.raw_data(), row_bytes);
    else
      copy_into(dst, r);
  }
  return out;
}

}  // namespace

Batch Dataset::get_batch(const std::vector<int64_t>& indices) const {
  std::vector<Tensor> inputs, targets;
  inputs.reserve(indices.size());
  targets.reserve(indices.size());
  for (int64_t i : indices) {
    KILN_CHECK_INDEX(i >= 0 && i < size(), "get_batch: index ", i, " out of range for a dataset of ", size(),
                     " examples");
    Example e = get(i);
    inputs.push_back(std::move(e.input));
    targets.push_back(std::move(e.target));
  }
  Batch b;
  b.input = stack_rows(inputs, "input");
  b.target = stack_rows(targets, "target");
  b.indices = indices;
  return b;
}

}  // namespace kiln::data
