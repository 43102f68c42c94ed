// Memory planning: every intermediate value of a graph gets an offset in one arena, chosen from
// the values' lifetimes (producer to last use) so that values never alive at the same time share
// bytes. Greedy by size (largest first, lowest offset that fits), as TFLite's arena planner.
// View ops (reshape, permute, slice, ...) may return their input's storage: their outputs are
// planned as aliases that extend the lifetime of the buffer they view. Graph outputs are not
// placed in the arena: they are handed to the caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kiln/graph/graph.h"

namespace kiln::graph {

struct PlannedBuffer {
  int64_t value_id = 0;
  size_t offset = 0;
  size_t bytes = 0;
  int first = 0, last = 0;  // node indices: producer, last use (aliases' uses included)
};

struct MemoryPlan {
  std::vector<PlannedBuffer> buffers;               // values placed in the arena
  std::unordered_map<int64_t, size_t> buffer_of;    // value id -> index in buffers
  std::unordered_set<int64_t> aliases;              // value ids planned as views of another buffer
  size_t arena_bytes = 0;
  size_t naive_bytes = 0;   // sum of the sizes of every intermediate (non-view) value
  size_t output_bytes = 0;  // graph outputs, allocated separately
  int unplanned = 0;        // intermediates whose size is unknown until run time (allocated then)
};

// The ops whose output may share its first input's storage.
bool is_view_op(std::string_view op);

// `symbols` binds the symbolic dims (from bind_inputs). Values whose shape is not fully known
// are left to the allocator at run time (counted in `unplanned`).
MemoryPlan plan_memory(const Graph& g, const std::map<std::string, int64_t>& symbols);

}  // namespace kiln::graph
