// metrics.jsonl: one parseable JSON object per line, flushed per line, append vs truncate.
#include <cmath>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/test_util.h"
#include "kiln/core/error.h"
#include "kiln/io/metrics_log.h"

using namespace kiln;

namespace {
std::vector<nlohmann::json> lines_of(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::string text = test::read_bytes(path), line;
  for (char c : text) {
    if (c == '\n') {
      out.push_back(nlohmann::json::parse(line));
      line.clear();
    } else {
      line.push_back(c);
    }
  }
  EXPECT_TRUE(line.empty()) << "unterminated last line";
  return out;
}
}  // namespace

TEST(MetricsLog, WritesOneObjectPerLine) {
  test::ScratchDir dir;
  const std::string path = dir.file("metrics.jsonl");
  {
    io::MetricsLog log(path, false);
    log.write({{"epoch", int64_t{1}}, {"loss", 0.5}, {"phase", std::string("train")}, {"done", false}});
    log.append(R"({"epoch":2,"loss":0.25})");
    // Visible before the log is closed.
    auto lines = lines_of(path);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0]["epoch"], 1);
    EXPECT_EQ(lines[0]["loss"], 0.5);
    EXPECT_EQ(lines[0]["phase"], "train");
    EXPECT_EQ(lines[0]["done"], false);
    EXPECT_EQ(lines[1]["loss"], 0.25);
    EXPECT_THROW(log.append("{\"a\":1}\n{\"b\":2}"), ValueError);
  }
  {
    io::MetricsLog log(path, true);  // resumed run: continues the file
    log.write({{"epoch", int64_t{3}}});
  }
  EXPECT_EQ(lines_of(path).size(), 3u);
  {
    io::MetricsLog log(path, false);  // new run: starts over
    log.write({{"epoch", int64_t{1}}});
  }
  EXPECT_EQ(lines_of(path).size(), 1u);
  EXPECT_THROW(io::MetricsLog(dir.file("no/dir/m.jsonl"), false), IoError);
}

TEST(MetricsLog, JsonLineKeepsOrderAndEscapes) {
  EXPECT_EQ(io::to_json_line({{"z", int64_t{1}}, {"a", 2.5}, {"s", std::string("q\"\n")}}),
            R"({"z":1,"a":2.5,"s":"q\"\n"})");
  EXPECT_EQ(io::to_json_line({{"nan", std::nan("")}, {"inf", INFINITY}}), R"({"nan":null,"inf":null})");
  EXPECT_EQ(io::to_json_line({}), "{}");
}
