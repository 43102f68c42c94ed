// Training checkpoints: a round trip keeps every field exactly, non-checkpoints are refused, and
// a write killed by SIGKILL half-way leaves the previous checkpoint intact.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "kiln/core/rng.h"
#include "kiln/io/atomic_file.h"
#include "kiln/io/checkpoint.h"
#include "kiln/nn/models.h"
#include "kiln/optim/optimizer.h"

using namespace kiln;
namespace fs = std::filesystem;

namespace {
std::string temp_path(const std::string& name) {
  auto d = fs::temp_directory_path() / ("kiln_ckpt_" + std::to_string(getpid()));
  fs::create_directories(d);
  return (d / name).string();
}
}  // namespace

TEST(Checkpoint, RoundTripKeepsEveryField) {
  nn::ModelSpec spec;
  spec.name = "mlp";
  auto model = nn::make_model(spec, 3);
  auto opt = optim::make_adam(model->parameters(), {});
  io::TrainingState s;
  s.step = 123;
  s.loader = {2, 17};
  s.rng = {99, 4242};
  s.epoch_loss_sum = 0.1 + 0.2;  // not exactly representable: must survive bit for bit
  s.epoch_batches = 17;
  s.config_toml = "[model]\nname = \"mlp\"\n";
  s.model_name = "mlp";
  s.extra["extra.vocab"] = "abc";
  std::string path = temp_path("rt.safetensors");
  io::save_checkpoint(path, *model, opt.get(), s);
  io::Checkpoint c = io::load_checkpoint(path);
  EXPECT_EQ(c.state.step, 123);
  EXPECT_EQ(c.state.loader.epoch, 2);
  EXPECT_EQ(c.state.loader.batch, 17);
  EXPECT_EQ(c.state.rng.seed, 99u);
  EXPECT_EQ(c.state.rng.offset, 4242u);
  EXPECT_EQ(c.state.epoch_loss_sum, 0.1 + 0.2);
  EXPECT_EQ(c.state.config_toml, s.config_toml);
  EXPECT_EQ(c.state.extra.at("extra.vocab"), "abc");
  auto sd = model->state_dict();
  ASSERT_EQ(c.model.size(), sd.size());
  for (const auto& [name, t] : sd) EXPECT_EQ(c.model.at(name).to_vector<float>(), t.to_vector<float>()) << name;
  EXPECT_EQ(c.optim.size(), opt->state_dict().size());
}

TEST(Checkpoint, PlainSafetensorsIsNotACheckpoint) {
  std::string path = temp_path("plain.safetensors");
  io::save_safetensors(path, {{"w", Tensor::ones({2})}});
  try {
    io::load_checkpoint(path);
    FAIL() << "expected an error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("not a Kiln checkpoint"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, SigkillDuringWriteKeepsPreviousFile) {
  std::string path = temp_path("victim.safetensors");
  io::save_safetensors(path, {{"w", Tensor::full({1000}, 1.5)}}, {{"generation", "1"}});
  std::string before = io::read_file(path);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child starts replacing the file, writes part of it, then hangs until killed.
    io::write_file_atomic(path, [](std::ostream& os) {
      std::string chunk(1 << 20, 'x');
      os << chunk;
      os.flush();
      for (;;) pause();
    });
    _exit(0);
  }
  // Wait until the child's temporary file holds data, then kill it mid-write.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  bool seen = false;
  while (!seen && std::chrono::steady_clock::now() < deadline) {
    for (const auto& e : fs::directory_iterator(fs::path(path).parent_path()))
      if (e.path().filename().string().find("victim.safetensors.tmp") == 0 && fs::file_size(e.path()) > 0) seen = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(seen);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(io::read_file(path), before);
  auto content = io::load_safetensors(path);
  EXPECT_EQ(content.metadata.at("generation"), "1");
  EXPECT_EQ(content.tensors.at("w").to_vector<float>(), std::vector<float>(1000, 1.5f));
}
