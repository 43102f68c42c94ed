// `kiln bench train` prints one JSON line whose rate agrees with its step time.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli/run_kiln.h"

using namespace kiln::testing;

TEST(CliBench, TrainPrintsOneConsistentJsonLine) {
  RunResult r = run_kiln("bench train --model mlp --steps 3 --warmup 1 --threads 1 --batch 32");
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(count_lines(r.out), 1) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["model"], "mlp");
  EXPECT_EQ(j["batch"], 32);
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["unit"], "images/s");
  double step_ms = j["step_ms"].get<double>();
  EXPECT_GT(step_ms, 0.0);
  EXPECT_NEAR(j["rate"].get<double>(), 32.0 / (step_ms / 1000.0), 1e-6 * j["rate"].get<double>());
}

TEST(CliBench, UnknownModelIsAOneLineError) {
  RunResult r = run_kiln("bench train --model alexnet --steps 1");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("alexnet"), std::string::npos) << r.err;
}
