// The pass manager: runs the optimisation passes in a fixed order, times each one, verifies the
// graph after it (options.verify) and can print the graph after a named pass.
#include <chrono>
#include <cstdio>
#include <functional>
#include <set>

#include "kiln/graph/pass_util.h"
#include "kiln/graph/passes.h"

namespace kiln::graph {

std::vector<PassLogEntry> optimize(Graph& g, const PassOptions& options) {
  std::vector<PassLogEntry> log;
  auto run = [&](const char* name, bool enabled, const std::function<int()>& pass) {
    if (!enabled) return 0;
    PassLogEntry e;
    e.pass = name;
    e.nodes_before = pass::node_count(g);
    auto t0 = std::chrono::steady_clock::now();
    int changed = pass();
    e.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    e.nodes_after = pass::node_count(g);
    e.detail = std::to_string(changed) + " changed";
    if (options.verify) verify(g, name);
    if (options.print_after == name || options.print_after == "all")
      std::fprintf(stderr, "---- graph after %s (%s)\n%s", name, e.detail.c_str(), to_text(g).c_str());
    log.push_back(std::move(e));
    return changed;
  };
  // Folding first: it turns shape arithmetic into constants the other passes match on; the
  // identities it exposes (reshape to the same shape, x * 1) go in the simplify after it.
  run("fold_constants", options.fold_constants, [&] { return fold_constants(g); });
  int simplified = run("simplify", options.simplify || options.cse, [&] {
    if (!options.simplify) return eliminate_dead_code(g) + eliminate_common_subexpressions(g);
    return simplify(g, options.cse);
  });
  if (simplified && options.fold_constants) run("fold_constants", true, [&] { return fold_constants(g); });
  // Batch norm folds into a bare conv/linear, so before the activation fusions.
  run("fold_batch_norm", options.fold_batch_norm, [&] { return fold_batch_norm(g); });
  int patterns = run("fuse_patterns", options.fuse, [&] { return fuse_patterns(g); });
  if (patterns && (options.simplify || options.cse))
    run("simplify", true, [&] { return options.simplify ? simplify(g, options.cse) : eliminate_dead_code(g); });
  // Last: fused_elementwise nodes hide their ops from every pattern above.
  run("fuse_elementwise", options.fuse, [&] { return fuse_elementwise(g); });
  // Control-flow bodies are graphs of their own (their inputs and outputs stay as they are):
  // the same passes, unlogged. A body shared by two nodes is optimised once.
  PassOptions body_options = options;
  body_options.print_after.clear();
  std::set<Graph*> done;
  for (const auto& n : g.nodes())
    for (const auto& [key, sub] : n->subgraphs)
      if (sub && done.insert(sub.get()).second) optimize(*sub, body_options);
  return log;
}

}  // namespace kiln::graph
