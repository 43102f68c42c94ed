// The graph optimisation passes and the pass manager that runs them in order. Every pass rewrites
// a Graph in place, keeps its nodes topologically ordered and its outputs produced values with
// their names, and returns how many nodes it changed (0: nothing to do). Each pass is one file.
#pragma once

#include <string>
#include <vector>

#include "kiln/graph/graph.h"

namespace kiln::graph {

struct PassOptions {
  bool fold_constants = true, cse = true, simplify = true, fold_batch_norm = true, fuse = true;
#ifdef NDEBUG
  bool verify = false;  // graph::verify after every pass
#else
  bool verify = true;
#endif
  std::string print_after;  // a pass name (or "all"): print the graph text to stderr after it
};

struct PassLogEntry {
  std::string pass;
  int nodes_before = 0, nodes_after = 0;
  std::string detail;  // "12 changed"
  double ms = 0;
};

// Runs the enabled passes: fold_constants, simplify (dead code, cse, identities), fold_batch_norm,
// fuse_patterns, simplify, fuse_elementwise; then the same on every control-flow body (unlogged).
// One log entry per pass run.
std::vector<PassLogEntry> optimize(Graph& g, const PassOptions& options = {});

// Nodes whose (present) inputs are all constants run through their kernel once and their outputs
// become constants (up to 64 MiB each); shape_of of a value of fully fixed shape folds from the
// value's shape. Nondeterministic ops (dropout) are left alone.
int fold_constants(Graph& g);

// Dead-code elimination (Graph::remove_unused).
int eliminate_dead_code(Graph& g);
// Common subexpressions: nodes with the same op, inputs and attributes, and constants with equal
// bytes, become one.
int eliminate_common_subexpressions(Graph& g);
// Algebraic identities and no-op removal: x+0, x-0, x*1, x/1 (when broadcasting changes neither
// shape nor dtype), clone/contiguous/dropout/to(same dtype), permute∘permute, reshape∘reshape,
// squeeze∘unsqueeze. Repeats until nothing changes.
int simplify_identities(Graph& g);
// eliminate_dead_code + eliminate_common_subexpressions (when `cse`) + simplify_identities,
// repeated to a fixed point.
int simplify(Graph& g, bool cse = true);

// batch_norm(conv2d(x, W, b)) and batch_norm(linear(x, W, b)) with constant parameters become
// one conv2d / linear with folded weights.
int fold_batch_norm(Graph& g);

// Known multi-node patterns -> one op: matmul + bias -> linear; linear + relu/gelu ->
// linear_act; decomposed GELU (erf and tanh forms) -> gelu; conv2d + relu -> conv2d{relu};
// decomposed layer norm -> layer_norm; matmul/scale/[mask]/softmax/matmul ->
// scaled_dot_product_attention.
int fuse_patterns(Graph& g);

// Maximal groups of f32 elementwise/broadcast ops over one output shape -> one fused_elementwise
// node (its program format is documented in fused_program.h).
int fuse_elementwise(Graph& g);

// Fills in missing output shapes (and checks nothing) for elementwise and broadcast nodes whose
// input shapes are known: importers leave intermediate values shapeless. Returns how many values
// got a shape.
int infer_elementwise_shapes(Graph& g);

}  // namespace kiln::graph
