// The tracing hook: while a TraceSink is installed on this thread (graph::trace does it), every
// op that supports tracing reports itself — its graph-form name, input and output tensors and
// attributes — to the sink. Only the outermost op reports: an op built from other ops records
// itself, not its parts. With no sink installed the cost is one thread-local read per op.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::ops {

using TraceAttr = std::variant<int64_t, double, std::string, std::vector<int64_t>>;
using TraceAttrs = std::vector<std::pair<std::string, TraceAttr>>;

class TraceSink {
 public:
  virtual ~TraceSink() = default;
  // `op` is a row of ops.def; attributes use the names of the op's graph form
  // (graph/kernels_*.cpp). Undefined inputs are absent optional inputs.
  virtual void on_op(std::string_view op, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                     const TraceAttrs& attrs) = 0;
};

// Installs `sink` on this thread for the scope's lifetime (nesting restores the previous one).
class TraceScope {
 public:
  explicit TraceScope(TraceSink* sink);
  ~TraceScope();
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;

 private:
  TraceSink* previous_;
};

// Put at the top of a traced op; report through traced() on return.
class TracedOp {
 public:
  TracedOp();
  ~TracedOp();
  TracedOp(const TracedOp&) = delete;
  TracedOp& operator=(const TracedOp&) = delete;
  bool recording() const { return outermost_; }
  void record(std::string_view op, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
              const TraceAttrs& attrs) const;

 private:
  TraceSink* sink_;
  bool outermost_;
};

// Records a single-output op and returns its output: `return traced(t, "relu", {x}, y);`
inline Tensor traced(const TracedOp& t, std::string_view op, const std::vector<Tensor>& inputs, Tensor out,
                     const TraceAttrs& attrs = {}) {
  if (t.recording()) t.record(op, inputs, {out}, attrs);
  return out;
}

}  // namespace kiln::ops
