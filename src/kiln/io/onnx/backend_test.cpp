#include "kiln/io/onnx/backend_test.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "kiln/core/error.h"
#include "kiln/graph/executor.h"
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

}  // namespace

CaseResult run_backend_case(const std::string& dir, const BackendTestOptions& opt) {
  CaseResult r;
  r.name = fs::path(dir).filename().string();
  try {
    graph::Graph g = load_onnx((fs::path(dir) / "model.onnx").string());
    graph::Executor exec(g);
    std::vector<fs::path> sets;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(e.path());
    std::sort(sets.begin(), sets.end());
    if (sets.empty()) throw ValueError("no test_data_set_* directory");
    for (const fs::path& set : sets) {
      std::vector<Tensor> inputs;
      for (const fs::path& p : numbered(set, "input")) inputs.push_back(read_tensor_pb(p.string()));
      std::vector<Tensor> want;
      for (const fs::path& p : numbered(set, "output")) want.push_back(read_tensor_pb(p.string()));
      std::vector<Tensor> got = exec.run(inputs);
      if (got.size() < want.size())
        throw ValueError(detail::concat(got.size(), " outputs, expected ", want.size()));
      for (size_t k = 0; k < want.size(); ++k) {
        std::string diff = compare(got[k], want[k], opt);
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
