#include "kiln/ops/trace.h"

namespace kiln::ops {

namespace {
thread_local TraceSink* t_sink = nullptr;
thread_local int t_depth = 0;
}  // namespace

TraceScope::TraceScope(TraceSink* sink) : previous_(t_sink) { t_sink = sink; }
TraceScope::~TraceScope() { t_sink = previous_; }

TracedOp::TracedOp() : sink_(t_sink), outermost_(t_sink != nullptr && t_depth == 0) {
  if (sink_) ++t_depth;
}

TracedOp::~TracedOp() {
  if (sink_) --t_depth;
}

void TracedOp::record(std::string_view op, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                      const TraceAttrs& attrs) const {
  if (outermost_) sink_->on_op(op, inputs, outputs, attrs);
}

}  // namespace kiln::ops
