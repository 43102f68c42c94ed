#include "kiln/io/onnx/backend_test.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "kiln/core/error.h"
#include "kiln/graph/executor.h"
#include "kiln/graph/passes.h"
#include "kiln/io/onnx/onnx_import.h"
#include "kiln/io/onnx/tensor_proto.h"

namespace kiln::io {

namespace fs = std::filesystem;

const char* outcome_name(CaseOutcome o) {
  switch (o) {
    case CaseOutcome::pass: return "pass";
    case CaseOutcome::fail: return "fail";
    case CaseOutcome::unsupported: return "unsupported";
  }
  return "?";
}

namespace {

// input_0.pb, input_1.pb, ... in numeric order.
std::vector<fs::path> numbered(const fs::path& dir, const std::string& stem) {
  std::vector<fs::path> files;
  for (int i = 0;; ++i) {
    fs::path p = dir / (stem + "_" + std::to_string(i) + ".pb");
    if (!fs::exists(p)) break;
    files.push_back(p);
  }
  return files;
}

// Empty when equal within tolerance; otherwise what differs.
std::string compare(const Tensor& got, const Tensor& want, const BackendTestOptions& opt) {
  if (got.shape() != want.shape())
    return detail::concat("shape ", shape_str(got.shape()), ", expected ", shape_str(want.shape()));
  if (got.dtype() != want.dtype())
    return detail::concat("dtype ", dtype_name(got.dtype()), ", expected ", dtype_name(want.dtype()));
  if (!is_floating(want.dtype())) {
    std::vector<int64_t> a = got.to_vector<int64_t>(), b = want.to_vector<int64_t>();
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i] != b[i]) return detail::concat("element ", i, " is ", a[i], ", expected ", b[i]);
    return {};
  }
  std::vector<double> a = got.to_vector<double>(), b = want.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(b[i]) && std::isnan(a[i])) continue;
    if (std::isinf(b[i]) && a[i] == b[i]) continue;
    if (!(std::fabs(a[i] - b[i]) <= opt.atol + opt.rtol * std::fabs(b[i])))
      return detail::concat("element ", i, " is ", a[i], ", expected ", b[i]);
  }
  return {};
}

// A test input or expected output: a TensorProto, or (by the graph value's kind) a SequenceProto
// or OptionalProto.
ProtoValue read_value(const fs::path& p, const graph::Value* v) {
  ProtoValue out;
  if (!v || v->is_tensor()) {
    out.kind = ProtoValue::Kind::tensor;
    out.tensor = read_tensor_pb(p.string());
  } else if (v->kind == graph::ValueKind::sequence) {
    out.kind = ProtoValue::Kind::sequence;
    out.sequence = read_sequence_pb(p.string());
  } else {
    out = read_optional_pb(p.string());
  }
  return out;
}

graph::RtValue to_runtime(const ProtoValue& v) {
  if (v.kind == ProtoValue::Kind::tensor) return graph::RtValue(v.tensor);
  if (v.kind == ProtoValue::Kind::sequence) return graph::RtValue::sequence(v.sequence);
  return graph::RtValue();
}

// Sequences element by element; an empty optional matches only an empty optional.
std::string compare_value(const graph::RtValue& got, const ProtoValue& want, const BackendTestOptions& opt) {
  switch (want.kind) {
    case ProtoValue::Kind::none:
      return got.is_none() ? std::string() : "got " + graph::rt_value_str(got) + ", expected an empty optional";
    case ProtoValue::Kind::tensor:
      if (!got.is_tensor()) return "got " + graph::rt_value_str(got) + ", expected a tensor";
      return compare(got.tensor, want.tensor, opt);
    case ProtoValue::Kind::sequence:
      if (!got.is_sequence()) return "got " + graph::rt_value_str(got) + ", expected a sequence";
      if (got.seq.size() != want.sequence.size())
        return detail::concat("a sequence of ", got.seq.size(), ", expected ", want.sequence.size(), " elements");
      for (size_t j = 0; j < got.seq.size(); ++j)
        if (std::string d = compare(got.seq[j], want.sequence[j], opt); !d.empty())
          return detail::concat("sequence element ", j, ": ", d);
      return {};
  }
  return {};
}

}  // namespace

CaseResult run_backend_case(const std::string& dir, const BackendTestOptions& opt) {
  CaseResult r;
  r.name = fs::path(dir).filename().string();
  try {
    graph::Graph g = load_onnx((fs::path(dir) / "model.onnx").string());
    if (opt.optimize) {
      graph::PassOptions po;
      po.verify = true;
      graph::optimize(g, po);
    }
    graph::Executor exec(g);
    std::vector<fs::path> sets;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(e.path());
    std::sort(sets.begin(), sets.end());
    if (sets.empty()) throw ValueError("no test_data_set_* directory");
    for (const fs::path& set : sets) {
      auto declared = [](const std::vector<graph::Value*>& vs, size_t i) { return i < vs.size() ? vs[i] : nullptr; };
      std::vector<graph::RtValue> inputs;
      std::vector<fs::path> input_files = numbered(set, "input");
      for (size_t i = 0; i < input_files.size(); ++i)
        inputs.push_back(to_runtime(read_value(input_files[i], declared(g.inputs(), i))));
      std::vector<ProtoValue> want;
      std::vector<fs::path> output_files = numbered(set, "output");
      for (size_t k = 0; k < output_files.size(); ++k) want.push_back(read_value(output_files[k], declared(g.outputs(), k)));
      std::vector<graph::RtValue> got = exec.run_values(inputs);
      if (got.size() < want.size())
        throw ValueError(detail::concat(got.size(), " outputs, expected ", want.size()));
      for (size_t k = 0; k < want.size(); ++k) {
        std::string diff = compare_value(got[k], want[k], opt);
        if (!diff.empty()) {
          r.outcome = CaseOutcome::fail;
          r.detail = detail::concat(set.filename().string(), " output ", k, ": ", diff);
          return r;
        }
      }
    }
    r.outcome = CaseOutcome::pass;
  } catch (const NotImplementedError& e) {
    r.outcome = CaseOutcome::unsupported;
    r.detail = e.what();
  } catch (const std::exception& e) {
    r.outcome = CaseOutcome::fail;
    r.detail = e.what();
  }
  std::replace(r.detail.begin(), r.detail.end(), '\n', ' ');
  return r;
}

std::vector<std::string> list_backend_cases(const std::string& root, bool skip_expanded) {
  std::vector<std::string> cases;
  if (!fs::is_directory(root)) return cases;
  for (const auto& e : fs::directory_iterator(root)) {
    if (!e.is_directory() || !fs::exists(e.path() / "model.onnx")) continue;
    std::string name = e.path().filename().string();
    if (skip_expanded && name.find("_expanded") != std::string::npos) continue;
    cases.push_back(e.path().string());
  }
  std::sort(cases.begin(), cases.end());
  return cases;
}

}  // namespace kiln::io
