#include "kiln/data/subset.h"

namespace kiln::data {

SubsetDataset::SubsetDataset(DatasetPtr base, std::vector<int64_t> indices)
    : base_(std::move(base)), indices_(std::move(indices)) {
  KILN_CHECK(base_ != nullptr, "SubsetDataset: null base dataset");
  for (int64_t i : indices_)
    KILN_CHECK_INDEX(i >= 0 && i < base_->size(), "SubsetDataset: index ", i, " is outside the base dataset of ",
                     base_->size());
}

Example SubsetDataset::get(int64_t index) const {
  KILN_CHECK_INDEX(index >= 0 && index < size(), "SubsetDataset: index ", index, " is outside [0, ", size(), ")");
  return base_->get(indices_[static_cast<size_t>(index)]);
}

Batch SubsetDataset::get_batch(const std::vector<int64_t>& indices) const {
  std::vector<int64_t> mapped;
  mapped.reserve(indices.size());
  for (int64_t i : indices) {
    KILN_CHECK_INDEX(i >= 0 && i < size(), "SubsetDataset: index ", i, " is outside [0, ", size(), ")");
    mapped.push_back(indices_[static_cast<size_t>(i)]);
  }
  Batch b = base_->get_batch(mapped);
  b.indices = indices;
  return b;
}

}  // namespace kiln::data
