// Graph kernels for control flow (ONNX If, Loop, Scan): each node owns its bodies
// (Node::subgraphs) and runs them with a nested Executor. Graph form (C = num_captured, the outer
// values the bodies read, always the node's and every body's LAST C inputs, in the same order):
//   if_else (cond, captured x C) -> outs        then_branch, else_branch: (captured) -> outs
//   loop (M?, cond?, v x N, captured x C) -> (v_final x N, scan x K)
//        body: (iteration_num i64[], cond b8[], v x N, captured) -> (cond, v x N, scan_elem x K)
//        scan outputs stack the per-iteration elements on a new axis 0
//   scan (state x N, scan_in x S, captured x C) -> (state_final x N, scan_out x K)
//        attrs num_scan_inputs=S, scan_input_axes/directions (S), scan_output_axes/directions (K)
//        body: (state x N, scan_in element x S, captured) -> (state x N, scan_out element x K)
//   scan with batched=1 (ONNX Scan-8): (sequence_lens?, state x N, scan_in x S, captured); every
//        input has a leading batch axis and scan inputs scan axis 1; attr directions (S).
//   sequence_map (seq, extra x E, captured x C) -> (seq x K)
//        body: (element, extra element x E, captured) -> (element x K); a sequence extra input
//        gives its i-th element (all sequences of one length), a tensor itself every time
// if_else, loop and sequence_map run on graph::RtValue (kernels.h), so branch outputs and
// loop-carried values may be sequences or optionals (ONNX If-13/16, Loop-13/16); loop scan
// outputs and everything of scan are tensors.
// Bodies run once per iteration, so the executors are built once: per compiled graph (the
// prepared kernel) or, for the plain interpreter, once per node run.
#include <algorithm>

#include "kiln/core/error.h"
#include "kiln/core/placement.h"
#include "kiln/graph/executor.h"
#include "kiln/graph/kernels.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::graph {

namespace {

// One executor per body of the node, by subgraph key.
struct Bodies {
  std::map<std::string, std::unique_ptr<Executor>, std::less<>> exec;

  const Executor& at(const Node& n, std::string_view key) const {
    auto it = exec.find(key);
    if (it == exec.end()) kernel_error(n, detail::concat("missing subgraph '", key, "'"));
    return *it->second;
  }
};

std::shared_ptr<const Bodies> build_bodies(const Node& n, bool prepare) {
  auto b = std::make_shared<Bodies>();
  for (const auto& [key, sub] : n.subgraphs) {
    if (!sub) kernel_error(n, detail::concat("subgraph '", key, "' is empty"));
    b->exec.emplace(key, std::make_unique<Executor>(*sub, prepare));
  }
  return b;
}

size_t num_captured(const Node& n, size_t formal) {
  int64_t c = n.attr_int("num_captured", 0);
  if (c < 0 || static_cast<size_t>(c) + formal > n.inputs.size())
    kernel_error(n, detail::concat("num_captured=", c, " does not fit its ", n.inputs.size(), " inputs"));
  return static_cast<size_t>(c);
}

bool truth(const Node& n, const Tensor& t, std::string_view what) {
  if (t.numel() != 1) kernel_error(n, detail::concat(what, " must have one element, got ", t.str()));
  return t.item() != 0.0;
}

// A scalar in the rank the body declares for it (exporters write [] or [1]).
Tensor body_scalar(const Executor& e, size_t input, double v, DType dt) {
  Tensor t = Tensor::scalar(v, dt);
  const Value* decl = e.graph().inputs()[input];
  if (decl->shape && !decl->shape->empty()) t = ops::reshape(t, Shape(decl->shape->size(), 1));
  return t;
}

// Runs a body, checking it returns `want` outputs. Outer-planned addresses stay with the node's
// own outputs: the body's tensors are not them (an empty scope hides the offers meanwhile).
std::vector<Tensor> run_body(const Node& n, const Executor& e, const std::vector<Tensor>& inputs, size_t want) {
  std::vector<Tensor> outs;
  {
    PlacementScope none({});
    outs = e.run(inputs);
  }
  if (outs.size() != want)
    kernel_error(n, detail::concat("the body returns ", outs.size(), " values, the node needs ", want));
  return outs;
}

using Values = std::vector<RtValue>;

std::vector<RtValue> run_body(const Node& n, const Executor& e, const Values& inputs, size_t want) {
  Values outs;
  {
    PlacementScope none({});
    outs = e.run_values(inputs);
  }
  if (outs.size() != want)
    kernel_error(n, detail::concat("the body returns ", outs.size(), " values, the node needs ", want));
  return outs;
}

const Tensor& body_tensor(const Node& n, const RtValue& v, std::string_view what) {
  if (!v.is_tensor()) kernel_error(n, detail::concat(what, " must be a tensor, got ", rt_value_str(v)));
  return v.tensor;
}

// The scan outputs of zero iterations: empty, with the element shape the body declares.
Tensor empty_stack(const Node& n, const Value* elem, int64_t axis) {
  std::optional<Shape> s = elem->shape ? concrete_shape(*elem->shape) : std::nullopt;
  if (!s) kernel_error(n, detail::concat("no iterations ran and the shape of %", elem->name, " is unknown"));
  Shape out = *s;
  axis = normalize_axis(axis, static_cast<int64_t>(out.size()) + 1, n);
  out.insert(out.begin() + axis, 0);
  return Tensor::empty(out, elem->dtype);
}

// ---- if_else

Values run_if(const Node& n, const Values& inputs, const Bodies& b) {
  if (inputs.empty() || !inputs[0].is_tensor()) kernel_error(n, "input 0 (cond) must be a tensor");
  bool take = truth(n, inputs[0].tensor, "cond");
  const Executor& e = b.at(n, take ? "then_branch" : "else_branch");
  return run_body(n, e, Values(inputs.begin() + 1, inputs.end()), n.outputs.size());
}

// ---- loop

Values run_loop(const Node& n, const Values& inputs, const Bodies& b) {
  const size_t c = num_captured(n, 2);
  const size_t carried = inputs.size() - 2 - c;
  if (n.outputs.size() < carried) kernel_error(n, "fewer outputs than loop-carried values");
  const size_t k_scans = n.outputs.size() - carried;
  const Executor& e = b.at(n, "body");
  if (e.graph().inputs().size() != 2 + carried + c)
    kernel_error(n, detail::concat("the body takes ", e.graph().inputs().size(), " inputs, the node passes ",
                                   2 + carried + c));
  const RtValue &m_in = inputs[0], &cond_in = inputs[1];
  if (m_in.is_none() && cond_in.is_none())
    kernel_error(n, "neither a trip count M nor a condition: the loop would never end");
  const int64_t trips = m_in.is_none() ? -1 : static_cast<int64_t>(scalar_value(body_tensor(n, m_in, "M"), n, "M"));
  bool go = cond_in.is_none() ? true : truth(n, body_tensor(n, cond_in, "cond"), "cond");

  Values state(inputs.begin() + 2, inputs.begin() + 2 + static_cast<std::ptrdiff_t>(carried));
  Values args(2 + carried + c);
  std::copy(inputs.end() - static_cast<std::ptrdiff_t>(c), inputs.end(), args.end() - static_cast<std::ptrdiff_t>(c));
  std::vector<std::vector<Tensor>> scans(k_scans);
  for (int64_t i = 0; go && (trips < 0 || i < trips); ++i) {
    args[0] = RtValue(body_scalar(e, 0, static_cast<double>(i), DType::i64));
    args[1] = RtValue(body_scalar(e, 1, 1.0, DType::b8));
    std::copy(state.begin(), state.end(), args.begin() + 2);
    Values outs = run_body(n, e, args, 1 + carried + k_scans);
    // ONNX: the body's condition decides only when the node has a cond input.
    if (!cond_in.is_none()) go = truth(n, body_tensor(n, outs[0], "the body's cond output"), "the body's cond output");
    for (size_t j = 0; j < carried; ++j) state[j] = std::move(outs[1 + j]);
    for (size_t k = 0; k < k_scans; ++k) scans[k].push_back(body_tensor(n, outs[1 + carried + k], "a scan output"));
  }
  Values result = std::move(state);
  for (size_t k = 0; k < k_scans; ++k)
    result.emplace_back(scans[k].empty() ? empty_stack(n, e.graph().outputs()[1 + carried + k], 0)
                                         : ops::stack(scans[k], 0));
  return result;
}

// ---- sequence_map

Values run_sequence_map(const Node& n, const Values& inputs, const Bodies& b) {
  const size_t c = num_captured(n, 1);
  const size_t formal = inputs.size() - c;
  if (!inputs[0].is_sequence()) kernel_error(n, detail::concat("input 0 must be a sequence, got ", rt_value_str(inputs[0])));
  const size_t length = inputs[0].seq.size();
  for (size_t j = 1; j < formal; ++j) {
    if (inputs[j].is_none()) kernel_error(n, detail::concat("input ", j, " is missing"));
    if (inputs[j].is_sequence() && inputs[j].seq.size() != length)
      kernel_error(n, detail::concat("input ", j, " is a sequence of ", inputs[j].seq.size(), ", input 0 of ", length));
  }
  const Executor& e = b.at(n, "body");
  if (e.graph().inputs().size() != inputs.size())
    kernel_error(n, detail::concat("the body takes ", e.graph().inputs().size(), " inputs, the node passes ", inputs.size()));
  const size_t k_outs = n.outputs.size();
  std::vector<std::vector<Tensor>> results(k_outs);
  Values args(inputs);
  for (size_t i = 0; i < length; ++i) {
    for (size_t j = 0; j < formal; ++j)
      if (inputs[j].is_sequence()) args[j] = RtValue(inputs[j].seq[i]);
    Values outs = run_body(n, e, args, k_outs);
    for (size_t k = 0; k < k_outs; ++k) results[k].push_back(body_tensor(n, outs[k], "a body output"));
  }
  Values out;
  for (auto& r : results) out.push_back(RtValue::sequence(std::move(r)));
  return out;
}

// ---- scan

struct ScanSpec {
  size_t states = 0, scan_ins = 0, scan_outs = 0, captured = 0;
  std::vector<int64_t> in_axes, in_dirs, out_axes, out_dirs;
};

std::vector<int64_t> per_item(const Node& n, std::string_view key, size_t count) {
  std::vector<int64_t> v = n.attr_ints(key, std::vector<int64_t>(count, 0));
  if (v.size() != count) kernel_error(n, detail::concat(key, " has ", v.size(), " entries, expected ", count));
  for (int64_t x : v)
    if (key.ends_with("directions") && x != 0 && x != 1)
      kernel_error(n, detail::concat(key, " entries must be 0 or 1, got ", x));
  return v;
}

// The iterations of one scan (one batch entry for Scan-8): `scan_in` are scanned along
// spec.in_axes for `length` steps. Returns the final states and each scan output's elements in
// iteration order.
std::pair<std::vector<Tensor>, std::vector<std::vector<Tensor>>> scan_steps(
    const Node& n, const Executor& e, const ScanSpec& spec, std::vector<Tensor> state,
    const std::vector<Tensor>& scan_in, const std::vector<Tensor>& captured, int64_t length) {
  std::vector<Tensor> args(spec.states + spec.scan_ins + spec.captured);
  std::copy(captured.begin(), captured.end(), args.end() - static_cast<std::ptrdiff_t>(spec.captured));
  std::vector<std::vector<Tensor>> elems(spec.scan_outs);
  for (int64_t t = 0; t < length; ++t) {
    std::copy(state.begin(), state.end(), args.begin());
    for (size_t j = 0; j < spec.scan_ins; ++j) {
      int64_t axis = spec.in_axes[j], at = spec.in_dirs[j] ? length - 1 - t : t;
      args[spec.states + j] = ops::squeeze(ops::slice(scan_in[j], axis, at, at + 1), axis);
    }
    std::vector<Tensor> outs = run_body(n, e, args, spec.states + spec.scan_outs);
    for (size_t j = 0; j < spec.states; ++j) state[j] = std::move(outs[j]);
    for (size_t k = 0; k < spec.scan_outs; ++k) elems[k].push_back(std::move(outs[spec.states + k]));
  }
  return {std::move(state), std::move(elems)};
}

// Stacks one scan output's elements on `axis` (reversed for direction 1).
Tensor stack_output(const Node& n, const Executor& e, const ScanSpec& spec, size_t k, std::vector<Tensor> elems) {
  const Value* decl = e.graph().outputs()[spec.states + k];
  if (elems.empty()) return empty_stack(n, decl, spec.out_axes[k]);
  if (spec.out_dirs[k]) std::reverse(elems.begin(), elems.end());
  int64_t axis = normalize_axis(spec.out_axes[k], elems[0].dim() + 1, n);
  return ops::stack(elems, axis);
}

std::vector<Tensor> run_scan(const Node& n, const std::vector<Tensor>& inputs, const Bodies& b) {
  const bool batched = n.attr_int("batched", 0) != 0;
  const size_t lead = batched ? 1 : 0;  // Scan-8's sequence_lens
  ScanSpec spec;
  spec.captured = num_captured(n, lead);
  int64_t s = n.attr_int("num_scan_inputs");
  if (s < 1 || static_cast<size_t>(s) + lead + spec.captured > inputs.size())
    kernel_error(n, detail::concat("num_scan_inputs=", s, " does not fit its ", inputs.size(), " inputs"));
  spec.scan_ins = static_cast<size_t>(s);
  spec.states = inputs.size() - lead - spec.scan_ins - spec.captured;
  if (n.outputs.size() < spec.states) kernel_error(n, "fewer outputs than state values");
  spec.scan_outs = n.outputs.size() - spec.states;
  const Executor& e = b.at(n, "body");
  if (e.graph().inputs().size() != spec.states + spec.scan_ins + spec.captured)
    kernel_error(n, detail::concat("the body takes ", e.graph().inputs().size(), " inputs, the node passes ",
                                   spec.states + spec.scan_ins + spec.captured));

  auto from = [&](size_t first, size_t count) {
    auto begin = inputs.begin() + static_cast<std::ptrdiff_t>(first);
    return std::vector<Tensor>(begin, begin + static_cast<std::ptrdiff_t>(count));
  };
  std::vector<Tensor> state = from(lead, spec.states);
  std::vector<Tensor> scan_in = from(lead + spec.states, spec.scan_ins);
  std::vector<Tensor> captured = from(inputs.size() - spec.captured, spec.captured);
  for (size_t j = 0; j < spec.scan_ins; ++j)
    if (!scan_in[j].defined()) kernel_error(n, detail::concat("scan input ", j, " is missing"));

  if (!batched) {
    spec.in_dirs = per_item(n, "scan_input_directions", spec.scan_ins);
    spec.out_dirs = per_item(n, "scan_output_directions", spec.scan_outs);
    spec.in_axes = per_item(n, "scan_input_axes", spec.scan_ins);
    spec.out_axes = per_item(n, "scan_output_axes", spec.scan_outs);
    int64_t length = -1;
    for (size_t j = 0; j < spec.scan_ins; ++j) {
      spec.in_axes[j] = normalize_axis(spec.in_axes[j], scan_in[j].dim(), n);
      int64_t len = scan_in[j].shape()[static_cast<size_t>(spec.in_axes[j])];
      if (length >= 0 && len != length)
        kernel_error(n, detail::concat("scan inputs differ in length: ", length, " and ", len, " (input ", j, ")"));
      length = len;
    }
    auto [final_state, elems] = scan_steps(n, e, spec, std::move(state), scan_in, captured, length);
    for (size_t k = 0; k < spec.scan_outs; ++k) final_state.push_back(stack_output(n, e, spec, k, std::move(elems[k])));
    return final_state;
  }

  // Scan-8: every input carries a batch axis 0; each batch entry is one scan along axis 0 of its
  // slice, `sequence_lens[b]` steps long; scan outputs are zero past an entry's length.
  spec.in_dirs = per_item(n, "directions", spec.scan_ins);
  spec.out_dirs.assign(spec.scan_outs, 0);
  spec.in_axes.assign(spec.scan_ins, 0);
  spec.out_axes.assign(spec.scan_outs, 0);
  const Tensor& x0 = scan_in[0];
  if (x0.dim() < 2) kernel_error(n, detail::concat("scan inputs need (batch, sequence, ...), got ", x0.str()));
  const int64_t batch = x0.shape()[0], max_len = x0.shape()[1];
  for (size_t j = 0; j < spec.scan_ins; ++j)
    if (scan_in[j].dim() < 2 || scan_in[j].shape()[0] != batch || scan_in[j].shape()[1] != max_len)
      kernel_error(n, detail::concat("scan input ", j, " has shape ", shape_str(scan_in[j].shape()),
                                     ", scan input 0 has ", shape_str(x0.shape())));
  std::vector<int64_t> lens(static_cast<size_t>(batch), max_len);
  if (Tensor sl = optional_input(inputs, 0); sl.defined()) {
    lens = int_values(sl, n, "sequence_lens");
    if (static_cast<int64_t>(lens.size()) != batch)
      kernel_error(n, detail::concat("sequence_lens has ", lens.size(), " entries for a batch of ", batch));
    for (int64_t len : lens)
      if (len < 0 || len > max_len) kernel_error(n, detail::concat("sequence length ", len, " is out of [0, ", max_len, "]"));
  }
  auto entry = [](const Tensor& t, int64_t i) { return ops::squeeze(ops::slice(t, 0, i, i + 1), 0); };
  std::vector<std::vector<Tensor>> states_out(spec.states), scans_out(spec.scan_outs);
  for (int64_t bi = 0; bi < batch; ++bi) {
    std::vector<Tensor> st, sc;
    for (const Tensor& t : state) st.push_back(entry(t, bi));
    for (const Tensor& t : scan_in) sc.push_back(ops::slice(entry(t, bi), 0, 0, lens[static_cast<size_t>(bi)]));
    auto [final_state, elems] = scan_steps(n, e, spec, std::move(st), sc, captured, lens[static_cast<size_t>(bi)]);
    for (size_t j = 0; j < spec.states; ++j) states_out[j].push_back(std::move(final_state[j]));
    for (size_t k = 0; k < spec.scan_outs; ++k) {
      Tensor y = stack_output(n, e, spec, k, std::move(elems[k]));  // (len, ...)
      if (y.shape()[0] < max_len) {
        Shape pad = y.shape();
        pad[0] = max_len - y.shape()[0];
        y = ops::cat({y, Tensor::zeros(pad, y.dtype())}, 0);
      }
      scans_out[k].push_back(std::move(y));
    }
  }
  std::vector<Tensor> result;
  for (auto& v : states_out) result.push_back(ops::stack(v, 0));
  for (auto& v : scans_out) result.push_back(ops::stack(v, 0));
  return result;
}

// ---- the kernel table's forms: bodies built per run, or once per compiled graph; on tensors
// (the plain kernel table) or on values (nodes that carry sequences or optionals)

using TensorRun = std::vector<Tensor> (*)(const Node&, const std::vector<Tensor>&, const Bodies&);
using ValueRun = Values (*)(const Node&, const Values&, const Bodies&);

template <TensorRun kRun>
std::vector<Tensor> plain(const Node& n, const std::vector<Tensor>& inputs) {
  return kRun(n, inputs, *build_bodies(n, false));
}

PreparedState prepare_bodies(const Node& n) { return build_bodies(n, true); }

template <TensorRun kRun>
std::vector<Tensor> prepared(const Node& n, const std::vector<Tensor>& inputs, const void* state) {
  return kRun(n, inputs, *static_cast<const Bodies*>(state));
}

// A value-form run on tensors: absent inputs are none, and every output of a node the executor
// runs this way is a tensor (runs_on_values() sends the others to the value form).
template <ValueRun kRun>
std::vector<Tensor> on_tensors(const Node& n, const std::vector<Tensor>& inputs, const Bodies& b) {
  Values args;
  args.reserve(inputs.size());
  for (const Tensor& t : inputs) args.emplace_back(t);
  std::vector<Tensor> out;
  for (RtValue& v : kRun(n, args, b)) {
    if (v.is_sequence()) kernel_error(n, "a body returned a sequence where the node has a tensor output");
    out.push_back(std::move(v.tensor));
  }
  return out;
}

template <ValueRun kRun>
Values plain_values(const Node& n, const Values& inputs) {
  return kRun(n, inputs, *build_bodies(n, false));
}

template <ValueRun kRun>
Values prepared_values(const Node& n, const Values& inputs, const void* state) {
  return kRun(n, inputs, *static_cast<const Bodies*>(state));
}

template <TensorRun kRun>
void add_control(KernelTable& t, std::string_view op) {
  t.add(op, plain<kRun>);
  t.add_prepared(op, {prepare_bodies, prepared<kRun>});
}

template <ValueRun kRun>
void add_value_control(KernelTable& t, std::string_view op, bool tensor_form) {
  if (tensor_form) add_control<on_tensors<kRun>>(t, op);
  t.add_values(op, plain_values<kRun>);
  t.add_prepared_values(op, {prepare_bodies, prepared_values<kRun>});
}

}  // namespace

void register_control_kernels(KernelTable& t) {
  add_value_control<run_if>(t, "if_else", true);
  add_value_control<run_loop>(t, "loop", true);
  add_control<run_scan>(t, "scan");
  add_value_control<run_sequence_map>(t, "sequence_map", false);
}

}  // namespace kiln::graph
