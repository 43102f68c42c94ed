// Planned placement of tensor storage. The graph executor's memory plan puts every intermediate
// value at an offset in one arena; before running a node it offers those addresses here, and the
// next Storage of exactly that size created on this thread takes one (without owning it) instead
// of allocating. Kernels stay unaware: they allocate their outputs as usual.
#pragma once

#include <cstddef>
#include <vector>

namespace kiln {

struct PlacementOffer {
  void* ptr = nullptr;
  size_t nbytes = 0;
};

// Offers `offers` to Storage allocations on this thread for the scope's lifetime; each offer is
// taken at most once. Scopes do not nest (the executor opens one per node).
class PlacementScope {
 public:
  explicit PlacementScope(const std::vector<PlacementOffer>& offers);
  ~PlacementScope();
  PlacementScope(const PlacementScope&) = delete;
  PlacementScope& operator=(const PlacementScope&) = delete;
};

// The address of an open offer of exactly nbytes (removing it), or nullptr.
void* take_placement(size_t nbytes);

}  // namespace kiln
