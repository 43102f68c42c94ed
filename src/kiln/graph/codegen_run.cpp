// Calls a generated function (codegen.h) on tensors: broadcast strides per input, dims merged
// where every operand is contiguous across them (so the all-contiguous case reaches the generated
// fast path as one run of n elements), and the outer dim split across the thread pool.
#include <algorithm>

#include "kiln/core/error.h"
#include "kiln/core/thread_pool.h"
#include "kiln/graph/codegen.h"
#include "kiln/ops/cpu/elementwise_loops.h"

namespace kiln::graph::codegen {

namespace {

// The operands' layout after merging dims: size-1 dims dropped, adjacent dims merged where every
// input's strides allow it (the contiguous outputs always do).
struct Merged {
  std::vector<int64_t> shape;
  std::vector<std::vector<int64_t>> strides;  // per input
};

Merged merge_dims(const Shape& shape, const std::vector<Strides>& in) {
  Merged m;
  m.strides.resize(in.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !m.shape.empty();
    for (size_t k = 0; k < in.size() && merge; ++k) merge = m.strides[k].back() == in[k][d] * shape[d];
    if (merge) {
      m.shape.back() *= shape[d];
      for (size_t k = 0; k < in.size(); ++k) m.strides[k].back() = in[k][d];
    } else {
      m.shape.push_back(shape[d]);
      for (size_t k = 0; k < in.size(); ++k) m.strides[k].push_back(in[k][d]);
    }
  }
  return m;
}

// [lowest, highest] byte address an input reads.
std::pair<const char*, const char*> extent(const float* p, const Shape& shape, const Strides& st) {
  const float* lo = p;
  const float* hi = p;
  for (size_t d = 0; d < shape.size(); ++d) {
    int64_t span = (shape[d] - 1) * st[d];
    if (span < 0)
      lo += span;
    else
      hi += span;
  }
  return {reinterpret_cast<const char*>(lo), reinterpret_cast<const char*>(hi + 1)};
}

}  // namespace

void run(const FusedFunction& fn, const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) {
  KILN_CHECK(static_cast<int>(inputs.size()) >= fn.num_inputs, fn.symbol, " reads ", fn.num_inputs, " input(s), got ",
             inputs.size());
  KILN_CHECK(static_cast<int>(outputs.size()) == fn.num_outputs, fn.symbol, " writes ", fn.num_outputs,
             " output(s), got ", outputs.size());
  const Shape shape = outputs.at(0).shape();
  for (const Tensor& o : outputs)
    KILN_CHECK(o.dtype() == DType::f32 && o.is_contiguous() && o.shape() == shape, fn.symbol,
               ": outputs must be contiguous f32 of one shape, got ", o.str());
  const int64_t n = numel(shape);
  if (n == 0) return;
  const size_t ni = static_cast<size_t>(fn.num_inputs);
  std::vector<Strides> strides(ni);
  for (size_t k = 0; k < ni; ++k) {
    KILN_CHECK(inputs[k].defined() && inputs[k].dtype() == DType::f32, fn.symbol, ": input ", k, " must be f32, got ",
               inputs[k].defined() ? inputs[k].str() : std::string("nothing"));
    const Shape& s = inputs[k].shape();
    const size_t lead = shape.size() - std::min(shape.size(), s.size());
    bool fits = s.size() <= shape.size();
    for (size_t d = 0; d < s.size() && fits; ++d) fits = s[d] == 1 || s[d] == shape[lead + d];
    KILN_CHECK(fits, fn.symbol, ": input ", k, " of shape ", shape_str(s), " does not broadcast to the output shape ",
               shape_str(shape));
    strides[k] = ops::cpu::broadcast_strides(inputs[k], shape);
  }
  const Merged m = merge_dims(shape, strides);
  const int64_t rank = static_cast<int64_t>(m.shape.size());
  KILN_CHECK(rank <= kMaxRank, fn.symbol, ": ", rank, " dims after merging, more than ", kMaxRank);

  std::vector<const float*> in(ni);
  std::vector<const int64_t*> st(ni);
  for (size_t k = 0; k < ni; ++k) {
    in[k] = inputs[k].data<float>();
    st[k] = m.strides[k].data();
  }
  std::vector<float*> out(outputs.size());
  for (size_t j = 0; j < outputs.size(); ++j) out[j] = outputs[j].data<float>();
  if (rank == 0) {  // every dim has size 1: one element
    fn.fn(in.data(), st.data(), out.data(), nullptr, 0);
    return;
  }
  // Chunks of whole rows of the outer dim; each chunk is one call with its own pointers.
  const int64_t outer = m.shape[0], row = n / outer;
  const int64_t grain = std::max<int64_t>(1, ops::cpu::kElementwiseGrain / row);
  parallel_for(0, outer, grain, [&](int64_t lo, int64_t hi) {
    std::vector<const float*> cin(ni);
    for (size_t k = 0; k < ni; ++k) cin[k] = in[k] + lo * m.strides[k][0];
    std::vector<float*> cout(out.size());
    for (size_t j = 0; j < out.size(); ++j) cout[j] = out[j] + lo * row;
    std::vector<int64_t> cshape = m.shape;
    cshape[0] = hi - lo;
    fn.fn(cin.data(), st.data(), cout.data(), cshape.data(), rank);
  });
}

bool run_generated(const fused::Program& prog, const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) {
  if (mode() == Mode::off || outputs.empty()) return false;
  const Shape& shape = outputs[0].shape();
  if (static_cast<int64_t>(shape.size()) > kMaxRank) return false;
  // Generated loops assume outputs never overlap inputs (__restrict); anything else is left to
  // the interpreter.
  for (const Tensor& o : outputs) {
    const char* ob = static_cast<const char*>(o.raw_data());
    const char* oe = ob + o.numel() * static_cast<int64_t>(sizeof(float));
    for (const Tensor& t : inputs) {
      if (!t.defined() || t.dtype() != DType::f32 || t.dim() > static_cast<int64_t>(shape.size())) return false;
      auto [lo, hi] = extent(t.data<float>(), t.shape(), t.strides());
      if (t.numel() > 0 && lo < oe && ob < hi) return false;
    }
  }
  const FusedFunction* fn = find_or_compile(prog);
  if (!fn) return false;
  run(*fn, inputs, outputs);
  return true;
}

}  // namespace kiln::graph::codegen
