// Calls a generated function (codegen.h) on tensors: broadcast strides per input, dims merged
// where every operand is contiguous across them (so the all-contiguous case reaches the generated
// fast path as one run of n elements), and the outer dim split across the thread pool. Reduction
// programs merge kept and reduced dims separately and split the rows.
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

// Dims [begin, end) of `shape` merged onto m; no merge reaches across `begin`.
void merge_range(Merged& m, const Shape& shape, const std::vector<Strides>& in, size_t begin, size_t end) {
  const size_t first = m.shape.size();
  for (size_t d = begin; d < end; ++d) {
    if (shape[d] == 1) continue;
    bool merge = m.shape.size() > first;
    for (size_t k = 0; k < in.size() && merge; ++k) merge = m.strides[k].back() == in[k][d] * shape[d];
    if (merge) {
      m.shape.back() *= shape[d];
      for (size_t k = 0; k < in.size(); ++k) m.strides[k].back() = in[k][d];
    } else {
      m.shape.push_back(shape[d]);
      for (size_t k = 0; k < in.size(); ++k) m.strides[k].push_back(in[k][d]);
    }
  }
}

Merged merge_dims(const Shape& shape, const std::vector<Strides>& in) {
  Merged m;
  m.strides.resize(in.size());
  merge_range(m, shape, in, 0, shape.size());
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

// Each input's strides along `shape` (0 where broadcast), checking that it broadcasts there.
std::vector<Strides> input_strides(const FusedFunction& fn, const std::vector<Tensor>& inputs, const Shape& shape) {
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
  return strides;
}

void check_counts(const FusedFunction& fn, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs) {
  KILN_CHECK(static_cast<int>(inputs.size()) >= fn.num_inputs, fn.symbol, " reads ", fn.num_inputs, " input(s), got ",
             inputs.size());
  KILN_CHECK(static_cast<int>(outputs.size()) == fn.num_outputs, fn.symbol, " writes ", fn.num_outputs,
             " output(s), got ", outputs.size());
}

constexpr int64_t kReduceGrain = 1 << 14;  // elements per parallel task, as the interpreter

}  // namespace

void run(const FusedFunction& fn, const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) {
  check_counts(fn, inputs, outputs);
  KILN_CHECK(fn.fn, fn.symbol, " is a reduction program's function: call run_reduction");
  const Shape shape = outputs.at(0).shape();
  for (const Tensor& o : outputs)
    KILN_CHECK(o.dtype() == DType::f32 && o.is_contiguous() && o.shape() == shape, fn.symbol,
               ": outputs must be contiguous f32 of one shape, got ", o.str());
  const int64_t n = numel(shape);
  if (n == 0) return;
  const size_t ni = static_cast<size_t>(fn.num_inputs);
  const std::vector<Strides> strides = input_strides(fn, inputs, shape);
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

void run_reduction(const FusedFunction& fn, const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs,
                   const Shape& elements, int64_t reduced_axes) {
  check_counts(fn, inputs, outputs);
  KILN_CHECK(fn.reduce_fn, fn.symbol, " is an elementwise program's function: call run");
  const int64_t rank = static_cast<int64_t>(elements.size());
  KILN_CHECK(reduced_axes >= 0 && reduced_axes <= rank, fn.symbol, ": cannot reduce ", reduced_axes,
             " trailing dims of ", shape_str(elements));
  const size_t kept = static_cast<size_t>(rank - reduced_axes);
  const int64_t rows = numel(Shape(elements.begin(), elements.begin() + static_cast<std::ptrdiff_t>(kept)));
  for (const Tensor& o : outputs)
    KILN_CHECK(o.dtype() == DType::f32 && o.is_contiguous() && o.numel() == rows, fn.symbol,
               ": outputs must be contiguous f32 with one value per row (", rows, "), got ", o.str());
  if (rows == 0) return;
  const std::vector<Strides> strides = input_strides(fn, inputs, elements);
  Merged m;
  m.strides.resize(strides.size());
  merge_range(m, elements, strides, 0, kept);
  const size_t mk = m.shape.size();  // kept dims after merging
  merge_range(m, elements, strides, kept, elements.size());
  const int64_t mrank = static_cast<int64_t>(m.shape.size()), mred = mrank - static_cast<int64_t>(mk);
  KILN_CHECK(mrank <= kMaxRank, fn.symbol, ": ", mrank, " dims after merging, more than ", kMaxRank);
  const size_t ni = strides.size();
  std::vector<const float*> in(ni);
  std::vector<const int64_t*> st(ni);
  for (size_t k = 0; k < ni; ++k) {
    in[k] = inputs[k].data<float>();
    st[k] = m.strides[k].data();
  }
  std::vector<float*> out(outputs.size());
  for (size_t j = 0; j < outputs.size(); ++j) out[j] = outputs[j].data<float>();
  if (mk == 0) {  // one row
    fn.reduce_fn(in.data(), st.data(), out.data(), m.shape.data(), mrank, mred);
    return;
  }
  // Chunks of the outer kept dim; each chunk is one call with its own pointers.
  const int64_t outer = m.shape[0], per_outer = rows / outer, len = numel(elements) / rows;
  const int64_t grain = std::max<int64_t>(1, kReduceGrain / std::max<int64_t>(1, per_outer * len));
  parallel_for(0, outer, grain, [&](int64_t lo, int64_t hi) {
    std::vector<const float*> cin(ni);
    for (size_t k = 0; k < ni; ++k) cin[k] = in[k] + lo * m.strides[k][0];
    std::vector<float*> cout(out.size());
    for (size_t j = 0; j < out.size(); ++j) cout[j] = out[j] + lo * per_outer;
    std::vector<int64_t> cshape = m.shape;
    cshape[0] = hi - lo;
    fn.reduce_fn(cin.data(), st.data(), cout.data(), cshape.data(), mrank, mred);
  });
}

bool run_generated(const fused::Program& prog, const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs) {
  if (mode() == Mode::off || outputs.empty()) return false;
  Shape shape = outputs[0].shape();
  if (prog.is_reduction()) {  // the element shape: the inputs broadcast, left-padded to the rank
    shape.clear();
    for (const Tensor& t : inputs) {
      if (!t.defined() || t.dtype() != DType::f32) return false;
      shape = broadcast_shapes(shape, t.shape(), "fused_elementwise");
    }
    if (static_cast<int64_t>(shape.size()) > prog.rank) return false;
    shape.insert(shape.begin(), static_cast<size_t>(prog.rank) - shape.size(), 1);
  }
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
  if (prog.is_reduction()) run_reduction(*fn, inputs, outputs, shape, prog.reduce_axes);
  else run(*fn, inputs, outputs);
  return true;
}

}  // namespace kiln::graph::codegen
