// End-to-end `kiln train` / `kiln eval` on the real Fashion-MNIST: determinism, exact resume
// after SIGKILL, evaluation of a saved checkpoint, and refusal of a mismatched checkpoint.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "cli/run_kiln.h"
#include "kiln/io/safetensors.h"

using namespace kiln::testing;
namespace fs = std::filesystem;

namespace {

// Small enough to run in seconds, long enough to have several checkpoints to kill between.
const char* kConfig = R"(seed = 7
threads = 2
[model]
name = "mlp"
[data]
batch_size = 64
[optim]
name = "adam"
lr = 1e-3
[train]
epochs = 2
max_steps = 400
checkpoint_every = 25
eval_batches = 4
)";

std::string make_config(const std::string& dir) {
  write_text(dir + "/c.toml", kConfig);
  return dir + "/c.toml";
}

// Every model tensor of a checkpoint, as raw bytes.
std::map<std::string, std::vector<uint8_t>> model_bytes(const std::string& ckpt) {
  auto content = kiln::io::load_safetensors(ckpt);
  std::map<std::string, std::vector<uint8_t>> out;
  for (const auto& [name, t] : content.tensors) {
    if (name.rfind("model/", 0) != 0) continue;
    auto* p = static_cast<const uint8_t*>(t.raw_data());
    out[name] = std::vector<uint8_t>(p, p + t.numel() * kiln::element_size(t.dtype()));
  }
  return out;
}

std::vector<std::string> train_losses(const std::string& metrics) {
  std::vector<std::string> v;
  std::stringstream ss(slurp(metrics));
  std::string line;
  while (std::getline(ss, line)) {
    auto p = line.find("\"train_loss\":");
    v.push_back(line.substr(p, line.find(',', p) - p));
  }
  return v;
}

}  // namespace

TEST(CliTrain, SameSeedGivesBitwiseIdenticalRuns) {
  std::string d = temp_dir("determinism");
  std::string cfg = make_config(d);
  RunResult a = run_kiln("train " + cfg + " --out " + d + "/a");
  RunResult b = run_kiln("train " + cfg + " --out " + d + "/b");
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(count_lines(a.out), 1);  // the one-line JSON summary
  EXPECT_NE(a.out.find("\"test_accuracy\""), std::string::npos);
  auto la = train_losses(d + "/a/metrics.jsonl"), lb = train_losses(d + "/b/metrics.jsonl");
  ASSERT_EQ(la.size(), 1u);  // 400 steps of batch 64 end inside epoch 1's 938 batches
  EXPECT_EQ(la, lb);
  auto wa = model_bytes(d + "/a/checkpoint.safetensors"), wb = model_bytes(d + "/b/checkpoint.safetensors");
  ASSERT_EQ(wa.size(), 6u);  // three Linear layers: weight and bias each
  EXPECT_TRUE(wa == wb);
  // A different seed really changes the run (the comparison above can fail).
  RunResult c = run_kiln("train " + cfg + " --set seed=8 --out " + d + "/c");
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_FALSE(model_bytes(d + "/c/checkpoint.safetensors") == wa);
}

TEST(CliTrain, ResumeAfterSigkillMatchesUninterruptedRun) {
  std::string d = temp_dir("resume");
  std::string cfg = make_config(d);
  // Longer than the other tests' runs, so the kill surely lands mid-training.
  const std::string longer = " --set train.max_steps=800";
  RunResult full = run_kiln("train " + cfg + longer + " --out " + d + "/full");
  ASSERT_EQ(full.code, 0) << full.err;

  // Start the same run and SIGKILL it once it has written a checkpoint (mid-epoch).
  std::string out = d + "/killed";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (chdir(KILN_SOURCE_DIR) != 0) _exit(127);
    std::freopen("/dev/null", "w", stdout);
    std::freopen("/dev/null", "w", stderr);
    execl(kiln_binary().c_str(), "kiln", "train", cfg.c_str(), "--set", "train.max_steps=800", "--out", out.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(out + "/checkpoint.safetensors") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed; make it longer";
  auto partial = kiln::io::load_safetensors(out + "/checkpoint.safetensors");
  int64_t step_at_kill = std::stoll(partial.metadata.at("step"));
  EXPECT_GT(step_at_kill, 0);
  EXPECT_LT(step_at_kill, 800);

  RunResult resumed = run_kiln("train " + cfg + longer + " --out " + out + " --resume");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_TRUE(model_bytes(out + "/checkpoint.safetensors") == model_bytes(d + "/full/checkpoint.safetensors"));
  EXPECT_EQ(train_losses(out + "/metrics.jsonl"), train_losses(d + "/full/metrics.jsonl"));
  // Resuming a finished run trains no further: same step count, same weights.
  auto final_weights = model_bytes(out + "/checkpoint.safetensors");
  RunResult again = run_kiln("train " + cfg + longer + " --out " + out + " --resume");
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.out.find("\"steps\":800"), std::string::npos) << again.out;
  EXPECT_TRUE(model_bytes(out + "/checkpoint.safetensors") == final_weights);
  // No temporary files are left behind by the interrupted checkpoint writes.
  for (const auto& e : fs::directory_iterator(out))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(CliTrain, EvalOfSavedCheckpointAndArchitectureMismatch) {
  std::string d = temp_dir("eval");
  std::string cfg = make_config(d);
  RunResult t = run_kiln("train " + cfg + " --set train.max_steps=150 --set train.eval_batches=0 --out " + d + "/run");
  ASSERT_EQ(t.code, 0) << t.err;
  RunResult e = run_kiln("eval " + d + "/run/checkpoint.safetensors --data fashion-mnist:test");
  ASSERT_EQ(e.code, 0) << e.err;
  auto acc_of = [](const std::string& s, const std::string& key) {
    auto p = s.find("\"" + key + "\":");
    return std::stod(s.substr(p + key.size() + 3));
  };
  double train_acc = acc_of(t.out, "test_accuracy"), eval_acc = acc_of(e.out, "accuracy");
  EXPECT_DOUBLE_EQ(train_acc, eval_acc);  // the same weights on the same 10,000 images
  EXPECT_GT(eval_acc, 0.70);              // 150 Adam steps already learn most of the task
  EXPECT_NE(e.out.find("\"count\":10000"), std::string::npos) << e.out;

  RunResult mismatch = run_kiln("train " + cfg + " --set model.name=cnn --out " + d + "/run --resume");
  EXPECT_NE(mismatch.code, 0);
  EXPECT_NE(mismatch.err.find("holds model 'mlp'"), std::string::npos) << mismatch.err;
  // Loading mlp weights into a cnn must fail cleanly too (state dict keys and shapes differ):
  // rewrite the checkpoint's recorded model name to fool the first check.
  auto content = kiln::io::load_safetensors(d + "/run/checkpoint.safetensors");
  content.metadata["model.name"] = "cnn";
  kiln::io::save_safetensors(d + "/fake.safetensors", content.tensors, content.metadata);
  fs::create_directories(d + "/fake");
  fs::copy_file(d + "/fake.safetensors", d + "/fake/checkpoint.safetensors");
  RunResult wrong = run_kiln("train " + cfg + " --set model.name=cnn --out " + d + "/fake --resume");
  EXPECT_NE(wrong.code, 0);
  EXPECT_EQ(count_lines(wrong.err), 1) << wrong.err;
  EXPECT_NE(wrong.err.find("load_state_dict"), std::string::npos) << wrong.err;
}
