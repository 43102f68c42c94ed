// A view of another dataset through a list of its indices (a federated client's share, a
// validation split). Examples are fetched from the base dataset on demand, never copied.
#pragma once

#include <vector>

#include "kiln/data/dataset.h"

namespace kiln::data {

class SubsetDataset : public Dataset {
 public:
  SubsetDataset(DatasetPtr base, std::vector<int64_t> indices);
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  Example get(int64_t index) const override;
  Batch get_batch(const std::vector<int64_t>& indices) const override;

 private:
  DatasetPtr base_;
  std::vector<int64_t> indices_;
};

}  // namespace kiln::data
