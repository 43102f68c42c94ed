// Runs one case of the ONNX backend test suite (a directory with model.onnx and
// test_data_set_*/input_*.pb, output_*.pb, as shipped by Debian's libonnx-testdata) through
// import and the graph executor, and compares the outputs as ONNX's own runner does.
#pragma once

#include <string>
#include <vector>

namespace kiln::io {

enum class CaseOutcome { pass, fail, unsupported };
const char* outcome_name(CaseOutcome o);

struct CaseResult {
  std::string name;     // the directory name, e.g. "test_relu"
  CaseOutcome outcome = CaseOutcome::fail;
  std::string detail;   // first error or mismatch, one line
};

struct BackendTestOptions {
  double rtol = 1e-3;   // ONNX backend defaults
  double atol = 1e-7;
  bool optimize = false;  // run the compiler passes before executing (when they exist)
};

CaseResult run_backend_case(const std::string& dir, const BackendTestOptions& opt = {});
// Every case directory under `root` (sorted by name); `skip_expanded` drops the *_expanded ones.
std::vector<std::string> list_backend_cases(const std::string& root, bool skip_expanded);

}  // namespace kiln::io
