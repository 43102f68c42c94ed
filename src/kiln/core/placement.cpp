#include "kiln/core/placement.h"

namespace kiln {

namespace {
thread_local std::vector<PlacementOffer> t_offers;
}  // namespace

PlacementScope::PlacementScope(const std::vector<PlacementOffer>& offers) { t_offers = offers; }
PlacementScope::~PlacementScope() { t_offers.clear(); }

void* take_placement(size_t nbytes) {
  for (size_t i = 0; i < t_offers.size(); ++i) {
    if (t_offers[i].nbytes == nbytes && t_offers[i].ptr) {
      void* p = t_offers[i].ptr;
      t_offers[i].ptr = nullptr;
      return p;
    }
  }
  return nullptr;
}

}  // namespace kiln
