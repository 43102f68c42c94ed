// Helpers the optimisation passes share (internal to graph/): who uses a value, reading constant
// operands, rewiring uses while keeping graph outputs named and produced, and re-sorting nodes.
#pragma once

#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kiln/graph/graph.h"

namespace kiln::graph::pass {

// The readers of every value: each node input slot counts once, each graph output slot once.
// A snapshot: rebuild it after rewriting.
class UseIndex {
 public:
  explicit UseIndex(const Graph& g);
  int count(const Value* v) const;                     // input slots + output slots
  const std::vector<Node*>& users(const Value* v) const;  // distinct nodes, in graph order
  bool is_output(const Value* v) const;
  // The only reader of v when v has exactly one use and is not a graph output.
  Node* sole_user(const Value* v) const;

 private:
  std::unordered_map<const Value*, int> counts_;
  std::unordered_map<const Value*, std::vector<Node*>> users_;
  std::unordered_map<const Value*, bool> outputs_;
  std::vector<Node*> none_;
};

// v's producer when it is a node of op `op`.
Node* producer_of(const Value* v, std::string_view op);
// The constant tensor of v, or nullptr.
const Tensor* const_of(const Value* v);
// The value of a one-element constant.
std::optional<double> scalar_const(const Value* v);
// Whether v is a constant whose every element equals x (any numeric dtype).
bool const_all_equal(const Value* v, double x);
// The concrete shape of v, when every dim is fixed.
std::optional<Shape> concrete(const Value* v);
// v's rank, or -1 when unknown.
int64_t rank_of(const Value* v);
// Integers from input i when it is a constant, else from attribute `key`; nullopt when neither.
// `present` (optional) tells whether either form was there at all.
std::optional<std::vector<int64_t>> const_ints(const Node& n, size_t i, std::string_view key);

// Rewrites n in place into another op (same name, same outputs).
void rewrite(Node* n, std::string_view op, std::vector<Value*> inputs,
             std::map<std::string, Attr, std::less<>> attrs = {});
// Unhooks n's outputs so remove_unused drops it; its output values become free for reuse.
void detach(Node* n);
// Inserts a new node just before `anchor` (appending when anchor is null).
Node* insert_before(Graph& g, const Node* anchor, std::string_view op, std::vector<Value*> inputs,
                    std::vector<Value*> outputs, std::map<std::string, Attr, std::less<>> attrs = {});

// Makes every reader of `from` read `to`, where `from`'s producer is about to go away. A graph
// output keeps its name: `to`'s producer takes over the value `from` when it can (a rename),
// else, when allow_copy, a clone(to) produces it. Returns false (changing nothing) when `from`
// is a graph output that could only be kept by a copy and !allow_copy.
bool substitute(Graph& g, Value* from, Value* to, bool allow_copy);

// Re-sorts nodes topologically, keeping the current order wherever it is already valid.
void topo_sort(Graph& g);

// Node count as int (for logs and pass results).
inline int node_count(const Graph& g) { return static_cast<int>(g.nodes().size()); }

}  // namespace kiln::graph::pass
