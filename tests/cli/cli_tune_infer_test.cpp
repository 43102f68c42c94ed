// `kiln bench infer` (latency percentiles) and `kiln tune-kernels` (fills the tuning cache file
// named by KILN_TUNE_CACHE; bad shapes are one-line errors).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/run_kiln.h"

using namespace kiln::testing;

TEST(CliBench, InferPrintsOrderedPercentiles) {
  RunResult r = run_kiln("bench infer --model cnn --batch 2 --steps 20 --warmup 2 --threads 1");
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(count_lines(r.out), 1) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["model"], "cnn");
  EXPECT_EQ(j["batch"], 2);
  double p50 = j["latency_ms_p50"].get<double>(), p90 = j["latency_ms_p90"].get<double>(),
         p99 = j["latency_ms_p99"].get<double>();
  EXPECT_GT(p50, 0.0);
  EXPECT_LE(p50, p90);
  EXPECT_LE(p90, p99);
  EXPECT_NEAR(j["rate"].get<double>(), 2.0 / (p50 / 1000.0), 1e-6 * j["rate"].get<double>());
}

TEST(CliTune, TuneKernelsFillsTheCacheFile) {
  std::string cache = ::testing::TempDir() + "kiln_cli_tune_cache.txt";
  std::remove(cache.c_str());
  setenv("KILN_TUNE_CACHE", cache.c_str(), 1);  // inherited by the kiln child process
  RunResult r = run_kiln("tune-kernels --model mlp --gemm 96x128x160 --threads 1");
  unsetenv("KILN_TUNE_CACHE");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["cache"], cache);
  EXPECT_EQ(j["entries_before"], 0);
  // The explicit shape in both storage orders, plus the mlp's own GEMMs.
  EXPECT_GE(j["entries_after"].get<int>(), 3);
  std::ifstream in(cache);
  std::string line;
  int lines = 0;
  bool found = false;
  while (std::getline(in, line)) {
    ++lines;
    EXPECT_NE(line.find('\t'), std::string::npos) << line;
    if (line.find(":96x128x160:nn\tk=") != std::string::npos) found = true;
  }
  EXPECT_EQ(lines, j["entries_after"].get<int>());
  EXPECT_TRUE(found);
  std::remove(cache.c_str());
}

TEST(CliTune, BadGemmShapeIsAOneLineError) {
  RunResult r = run_kiln("tune-kernels --model mlp --gemm 12x0x4");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("12x0x4"), std::string::npos) << r.err;
}

TEST(CliTune, UnknownAutotuneModeIsAOneLineError) {
  setenv("KILN_AUTOTUNE", "sometimes", 1);  // inherited by the kiln child process
  RunResult r = run_kiln("bench train --model mlp --steps 1 --warmup 0 --threads 1 --batch 8");
  unsetenv("KILN_AUTOTUNE");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("KILN_AUTOTUNE"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("sometimes"), std::string::npos) << r.err;
}
