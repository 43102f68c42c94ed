// The ONNX backend cases of Debian's libonnx-testdata again, through the optimisation passes: every
// case that passes unoptimised must still pass after graph::optimize (with the verifier on), and
// the optimised outputs must match the expected ones with ONNX's tolerances (rtol 1e-3, atol
// 1e-7). The *_expanded cases (ops written out as their ONNX function bodies) are included: they
// are where the pattern fusions find work. Per-case results go to
// <build>/onnx_optimized_conformance.txt.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "kiln/core/error.h"
#include "kiln/graph/executor.h"
#include "kiln/graph/passes.h"
#include "kiln/io/onnx/backend_test.h"
#include "kiln/io/onnx/onnx_import.h"
#include "kiln/io/onnx/tensor_proto.h"

namespace kiln::io {
namespace {

namespace fs = std::filesystem;

const std::string kRoot = "/usr/share/libonnx-testdata/data";

struct DataSet {
  std::vector<Tensor> inputs, outputs;
};

std::vector<DataSet> read_sets(const fs::path& dir) {
  std::vector<fs::path> sets;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(e.path());
  std::sort(sets.begin(), sets.end());
  std::vector<DataSet> out;
  for (const fs::path& s : sets) {
    DataSet d;
    for (int i = 0; fs::exists(s / ("input_" + std::to_string(i) + ".pb")); ++i)
      d.inputs.push_back(read_tensor_pb((s / ("input_" + std::to_string(i) + ".pb")).string()));
    for (int i = 0; fs::exists(s / ("output_" + std::to_string(i) + ".pb")); ++i)
      d.outputs.push_back(read_tensor_pb((s / ("output_" + std::to_string(i) + ".pb")).string()));
    out.push_back(std::move(d));
  }
  return out;
}

// Empty when `got` matches `want` as ONNX's runner checks it.
std::string compare(const Tensor& got, const Tensor& want) {
  if (got.shape() != want.shape()) return "shape " + shape_str(got.shape()) + ", expected " + shape_str(want.shape());
  if (got.dtype() != want.dtype())
    return "dtype " + std::string(dtype_name(got.dtype())) + ", expected " + std::string(dtype_name(want.dtype()));
  std::vector<double> a = got.to_vector<double>(), b = want.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (std::isinf(b[i]) && a[i] == b[i]) continue;
    if (!(std::fabs(a[i] - b[i]) <= 1e-7 + 1e-3 * std::fabs(b[i])))
      return "element " + std::to_string(i) + " is " + std::to_string(a[i]) + ", expected " + std::to_string(b[i]);
  }
  return {};
}

// Runs every data set; empty on success, else the first problem.
std::string run_all(const graph::Graph& g, const std::vector<DataSet>& sets) {
  try {
    graph::Executor exec(g);
    for (size_t s = 0; s < sets.size(); ++s) {
      std::vector<Tensor> got = exec.run(sets[s].inputs);
      if (got.size() < sets[s].outputs.size()) return "too few outputs";
      for (size_t k = 0; k < sets[s].outputs.size(); ++k)
        if (std::string d = compare(got[k], sets[s].outputs[k]); !d.empty())
          return "set " + std::to_string(s) + " output " + std::to_string(k) + ": " + d;
    }
  } catch (const std::exception& e) {
    std::string m = e.what();
    std::replace(m.begin(), m.end(), '\n', ' ');
    return "error: " + m;
  }
  return {};
}

TEST(OnnxOptimizedConformance, CasesPassingUnoptimisedStillPassOptimised) {
  if (!fs::is_directory(kRoot + "/node")) GTEST_SKIP() << "libonnx-testdata is not installed";
  std::ofstream report(std::string(KILN_BINARY_DIR) + "/onnx_optimized_conformance.txt");
  int checked = 0, changed = 0;
  for (const char* suite : {"node", "simple", "pytorch-converted", "pytorch-operator"}) {
    for (const std::string& dir : list_backend_cases(kRoot + "/" + suite, /*skip_expanded=*/false)) {
      std::string key = std::string(suite) + "/" + fs::path(dir).filename().string();
      std::vector<DataSet> sets;
      graph::Graph plain, opt;
      try {
        plain = load_onnx(dir + "/model.onnx");
        opt = load_onnx(dir + "/model.onnx");
        sets = read_sets(dir);
      } catch (const std::exception&) {
        continue;  // not importable: the plain conformance test reports it
      }
      if (sets.empty() || !run_all(plain, sets).empty()) continue;
      ++checked;
      std::string problem;
      try {
        graph::PassOptions o;
        o.verify = true;
        size_t before = opt.nodes().size();
        optimize(opt, o);
        changed += opt.nodes().size() != before ? 1 : 0;
        problem = run_all(opt, sets);
        // Optimising an optimised graph changes nothing that matters: it still computes the same.
        if (problem.empty()) {
          optimize(opt, o);
          if (std::string again = run_all(opt, sets); !again.empty()) problem = "after a second optimize: " + again;
        }
      } catch (const std::exception& e) {
        problem = std::string("optimize: ") + e.what();
      }
      report << key << "\t" << (problem.empty() ? "pass" : "FAIL") << "\t" << plain.nodes().size() << " -> "
             << opt.nodes().size() << " nodes\t" << problem << "\n";
      if (!problem.empty()) ADD_FAILURE() << key << " fails only when optimised: " << problem;
    }
  }
  std::printf("onnx optimised: %d cases that pass unoptimised checked, %d changed by the passes\n", checked, changed);
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace kiln::io
