// Bad input of every kind reaches the user as one clear line on stderr and a non-zero exit.
#include <gtest/gtest.h>

#include <filesystem>

#include "cli/run_kiln.h"

using namespace kiln::testing;

namespace {

const char* kMinimal = R"(
[model]
name = "mlp"
[train]
epochs = 1
max_steps = 2
eval_batches = 1
)";

void expect_one_line_error(const RunResult& r, const std::string& needle) {
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("kiln: error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

}  // namespace

TEST(CliErrors, InfoPrintsBuildFacts) {
  RunResult r = run_kiln("info");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"simd\""), std::string::npos);
  EXPECT_NE(r.out.find("oneDNN"), std::string::npos);
  EXPECT_NE(r.out.find("\"cuda\": false"), std::string::npos);
}

TEST(CliErrors, UnknownConfigKeyIsNamed) {
  std::string d = temp_dir("unknown_key");
  write_text(d + "/c.toml", std::string(kMinimal) + "[optim]\nlearning_rate = 0.1\n");
  expect_one_line_error(run_kiln("train " + d + "/c.toml --out " + d + "/run"), "optim.learning_rate");
}

TEST(CliErrors, WrongTypeNamesKeyAndExpectedType) {
  std::string d = temp_dir("wrong_type");
  write_text(d + "/c.toml", std::string(kMinimal) + "[optim]\nlr = \"fast\"\n");
  RunResult r = run_kiln("train " + d + "/c.toml --out " + d + "/run");
  expect_one_line_error(r, "optim.lr");
  EXPECT_NE(r.err.find("expected a number, got string"), std::string::npos) << r.err;
  write_text(d + "/ok.toml", kMinimal);
  expect_one_line_error(run_kiln("train " + d + "/ok.toml --set data.batch_size=big --out " + d + "/run"),
                        "data.batch_size");
  expect_one_line_error(run_kiln("train " + d + "/ok.toml --set data.shuffle=3 --out " + d + "/run"),
                        "expected a boolean");
  expect_one_line_error(run_kiln("train " + d + "/ok.toml --set no.such=1 --out " + d + "/run"), "no.such");
  expect_one_line_error(run_kiln("train " + d + "/ok.toml --set data.batch_size=0 --out " + d + "/run"),
                        "must be positive");
}

TEST(CliErrors, InvalidTomlAndMissingFile) {
  std::string d = temp_dir("bad_toml");
  write_text(d + "/c.toml", "[model\nname = 3\n");
  expect_one_line_error(run_kiln("train " + d + "/c.toml --out " + d + "/run"), "invalid TOML");
  expect_one_line_error(run_kiln("train " + d + "/missing.toml --out " + d + "/run"), "missing.toml");
}

TEST(CliErrors, ModelThatDoesNotFitTheData) {
  std::string d = temp_dir("misfit");
  write_text(d + "/c.toml", "[model]\nname = \"gpt_char\"\n");
  expect_one_line_error(run_kiln("train " + d + "/c.toml --out " + d + "/run"), "does not fit dataset");
  write_text(d + "/c2.toml", "[model]\nname = \"transformer9000\"\n");
  expect_one_line_error(run_kiln("train " + d + "/c2.toml --out " + d + "/run"), "transformer9000");
}

TEST(CliErrors, MissingTruncatedAndCorruptDataset) {
  std::string d = temp_dir("bad_data");
  std::string data = d + "/fm";
  std::filesystem::create_directories(data);
  write_text(d + "/c.toml", std::string(kMinimal) + "[data]\npath = \"" + data + "\"\n");
  expect_one_line_error(run_kiln("train " + d + "/c.toml --out " + d + "/run"), "train-images-idx3-ubyte");

  const std::string src = "/usr/share/datasets/fashion-mnist/";
  for (const char* f : {"train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"})
    std::filesystem::copy_file(src + f, data + "/" + f);
  // A truncated image file: the first 100 kB of the real one.
  std::string images = slurp(src + "train-images-idx3-ubyte.gz");
  write_text(data + "/train-images-idx3-ubyte.gz", images.substr(0, 100000));
  RunResult r = run_kiln("train " + d + "/c.toml --out " + d + "/run");
  expect_one_line_error(r, "train-images-idx3-ubyte.gz");
  // Labels where images should be: the magic number is wrong.
  std::filesystem::copy_file(src + "train-labels-idx1-ubyte.gz", data + "/train-images-idx3-ubyte.gz",
                             std::filesystem::copy_options::overwrite_existing);
  expect_one_line_error(run_kiln("train " + d + "/c.toml --out " + d + "/run"), "magic");
}

TEST(CliErrors, CorruptCheckpointAndNonCheckpoint) {
  std::string d = temp_dir("bad_ckpt");
  write_text(d + "/garbage.safetensors", "this is not a safetensors file at all");
  expect_one_line_error(run_kiln("eval " + d + "/garbage.safetensors"), "garbage.safetensors");
  expect_one_line_error(run_kiln("eval " + d + "/absent.safetensors"), "absent.safetensors");
}
