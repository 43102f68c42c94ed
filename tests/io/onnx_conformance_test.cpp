// Conformance against the ONNX backend tests shipped by Debian's libonnx-testdata: every case
// listed in onnx_expected_pass.txt must still pass (a regression fails the test); the totals and
// every case's outcome are written to <build>/onnx_conformance.txt. Set
// KILN_ONNX_UPDATE_EXPECTED=1 to rewrite the expected list from this run.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "kiln/io/onnx/backend_test.h"

namespace kiln::io {
namespace {

const std::string kRoot = "/usr/share/libonnx-testdata/data";
const std::string kExpected = std::string(KILN_SOURCE_DIR) + "/tests/io/onnx_expected_pass.txt";

std::set<std::string> read_expected() {
  std::set<std::string> names;
  std::ifstream f(kExpected);
  for (std::string line; std::getline(f, line);)
    if (!line.empty() && line[0] != '#') names.insert(line);
  return names;
}

TEST(OnnxConformance, ExpectedCasesPassAndTotalsAreReported) {
  if (!std::filesystem::is_directory(kRoot + "/node")) GTEST_SKIP() << "libonnx-testdata is not installed";
  std::set<std::string> expected = read_expected();
  std::ofstream report(std::string(KILN_BINARY_DIR) + "/onnx_conformance.txt");
  std::set<std::string> passed;
  std::vector<std::string> regressions;
  for (const char* suite : {"node", "simple", "pytorch-converted", "pytorch-operator"}) {
    std::map<CaseOutcome, int> counts;
    for (const std::string& dir : list_backend_cases(kRoot + "/" + suite, /*skip_expanded=*/true)) {
      CaseResult r = run_backend_case(dir);
      std::string key = std::string(suite) + "/" + r.name;
      ++counts[r.outcome];
      report << key << "\t" << outcome_name(r.outcome) << "\t" << r.detail << "\n";
      if (r.outcome == CaseOutcome::pass) passed.insert(key);
      else if (expected.count(key)) regressions.push_back(key + ": " + outcome_name(r.outcome) + ": " + r.detail);
    }
    int total = counts[CaseOutcome::pass] + counts[CaseOutcome::fail] + counts[CaseOutcome::unsupported];
    std::printf("onnx %s: %d/%d pass, %d fail, %d unsupported\n", suite, counts[CaseOutcome::pass], total,
                counts[CaseOutcome::fail], counts[CaseOutcome::unsupported]);
  }
  if (const char* update = std::getenv("KILN_ONNX_UPDATE_EXPECTED"); update && std::string(update) == "1") {
    std::ofstream out(kExpected);
    out << "# ONNX backend test cases (libonnx-testdata 1.12) that pass; a regression fails ctest.\n"
        << "# Regenerate: KILN_ONNX_UPDATE_EXPECTED=1 build/tests/test_io --gtest_filter='OnnxConformance*'\n";
    for (const std::string& name : passed) out << name << "\n";
  }
  for (const std::string& r : regressions) ADD_FAILURE() << "regressed: " << r;
}

}  // namespace
}  // namespace kiln::io
