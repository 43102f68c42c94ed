#include "kiln/graph/memory_plan.h"

#include <algorithm>
#include <optional>

#include "kiln/core/allocator.h"

namespace kiln::graph {

bool is_view_op(std::string_view op) {
  static const std::unordered_set<std::string_view> kViews = {
      "reshape", "flatten", "squeeze", "unsqueeze", "permute", "transpose", "slice",
      "expand",  "dropout", "split",   "clone",     "contiguous"};
  // clone/contiguous copy, but a graph may run them on values whose kernel returns the input
  // unchanged in future; treating them as views only lengthens a lifetime, never breaks one.
  return kViews.count(op) > 0;
}

namespace {

std::optional<size_t> value_bytes(const Value& v, const std::map<std::string, int64_t>& symbols) {
  if (!v.shape) return std::nullopt;
  size_t n = element_size(v.dtype);
  for (const Dim& d : *v.shape) {
    int64_t size = d.size;
    if (!d.is_fixed()) {
      auto it = symbols.find(d.symbol);
      if (d.symbol.empty() || it == symbols.end()) return std::nullopt;
      size = it->second;
    }
    n *= static_cast<size_t>(size);
  }
  return n;
}

size_t align_up(size_t n) { return (n + kStorageAlignment - 1) / kStorageAlignment * kStorageAlignment; }

}  // namespace

MemoryPlan plan_memory(const Graph& g, const std::map<std::string, int64_t>& symbols) {
  MemoryPlan plan;
  const auto& nodes = g.nodes();
  std::unordered_set<const Value*> outputs(g.outputs().begin(), g.outputs().end());
  // Root buffer of every value produced in the graph: itself, or (for view outputs) its input's.
  std::unordered_map<const Value*, const Value*> root;
  std::unordered_map<const Value*, int> first, last;
  std::unordered_set<const Value*> pinned;  // roots that must live outside the arena
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    const Node& n = *nodes[static_cast<size_t>(i)];
    for (const Value* in : n.inputs) {
      if (!in || !root.count(in)) continue;
      last[root[in]] = std::max(last[root[in]], i);
    }
    // Sequences and optionals are never planned, nor are the tensors a value node returns (an
    // element of a sequence, the input itself); a tensor it reads may live on inside a sequence
    // past its last direct use, so it stays out of the arena too.
    if (runs_on_values(n)) {
      for (const Value* in : n.inputs)
        if (in && root.count(in)) pinned.insert(root[in]);
      continue;
    }
    const Value* src = n.inputs.empty() ? nullptr : n.inputs[0];
    bool view = is_view_op(n.op_name()) && src && root.count(src);
    // A view of a graph input or a constant lives in memory the plan does not own.
    bool external_view = is_view_op(n.op_name()) && src && !root.count(src);
    for (const Value* out : n.outputs) {
      if (external_view) {
        plan.aliases.insert(out->id);
        continue;
      }
      const Value* r = view ? root[src] : out;
      root[out] = r;
      if (!view) first[out] = last[out] = i;
      if (view) plan.aliases.insert(out->id);
      if (outputs.count(out)) pinned.insert(r);
    }
  }
  // Values that feed the graph outputs through views must outlive the run: pin their roots.
  struct Item {
    const Value* v;
    size_t bytes;
  };
  std::vector<Item> items;
  for (const auto& [v, r] : root) {
    if (v != r) continue;
    std::optional<size_t> bytes = value_bytes(*v, symbols);
    if (!bytes) {
      ++plan.unplanned;
      continue;
    }
    if (pinned.count(v)) {
      plan.output_bytes += *bytes;
      continue;
    }
    plan.naive_bytes += *bytes;
    if (*bytes == 0) continue;
    items.push_back({v, *bytes});
  }
  // Largest first; ties by producer order so the plan is deterministic.
  std::sort(items.begin(), items.end(), [&](const Item& a, const Item& b) {
    if (a.bytes != b.bytes) return a.bytes > b.bytes;
    return a.v->id < b.v->id;
  });
  for (const Item& it : items) {
    int f = first[it.v], l = last[it.v];
    // Placed buffers whose lifetimes overlap this one, by offset.
    std::vector<const PlannedBuffer*> live;
    for (const PlannedBuffer& b : plan.buffers)
      if (!(b.last < f || l < b.first)) live.push_back(&b);
    std::sort(live.begin(), live.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    size_t offset = 0, need = align_up(it.bytes);
    for (const PlannedBuffer* b : live) {
      if (offset + need <= b->offset) break;
      offset = std::max(offset, b->offset + align_up(b->bytes));
    }
    plan.buffer_of[it.v->id] = plan.buffers.size();
    plan.buffers.push_back({it.v->id, offset, it.bytes, f, l});
    plan.arena_bytes = std::max(plan.arena_bytes, offset + need);
  }
  return plan;
}

}  // namespace kiln::graph
