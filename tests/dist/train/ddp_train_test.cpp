// Data-parallel training end to end: real `kiln train` processes under mpirun on real
// Fashion-MNIST. N ranks must give the bits of one process with the same data shards; bad
// launches must fail on every rank; a killed rank must end the job quickly and a resumed run
// must finish where an uninterrupted one does.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "kiln/io/checkpoint.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

struct Result {
  int rc = -1;
  std::string out;
};

Result run(const std::string& cmd) {
  Result r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) r.out.append(buf, n);
  int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  return r;
}

const std::string kKiln = KILN_BINARY_DIR "/kiln";
const std::string kMnist = KILN_SOURCE_DIR "/examples/fashion_mlp.toml";
const std::string kCnn = KILN_SOURCE_DIR "/examples/fashion_cnn.toml";

// What `kiln launch` sets for mpirun: root allowed (CI containers run as root), shared memory
// without the single-copy mode containers often forbid.
const bool kMpiEnvironment = [] {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
  return true;
}();

std::string mpirun(int ranks) { return "mpirun --oversubscribe --bind-to none -np " + std::to_string(ranks) + " "; }

// Every run directory of this process lives under one folder, removed when the process ends.
const fs::path& scratch() {
  static const struct Scratch {
    fs::path dir = fs::temp_directory_path() / ("kiln_ddp_" + std::to_string(getpid()));
    ~Scratch() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } s;
  return s.dir;
}

std::string out_dir(const std::string& name) {
  fs::path d = scratch() / name;
  fs::remove_all(d);
  return d.string();
}

// Every model (and optimiser) tensor bit for bit; names the first that differs.
void expect_same_bits(const std::string& a_dir, const std::string& b_dir, bool with_optimizer = true) {
  io::Checkpoint a = io::load_checkpoint(a_dir + "/checkpoint.safetensors");
  io::Checkpoint b = io::load_checkpoint(b_dir + "/checkpoint.safetensors");
  EXPECT_EQ(a.state.step, b.state.step);
  std::vector<std::pair<nn::StateDict*, nn::StateDict*>> maps = {{&a.model, &b.model}};
  if (with_optimizer) maps.emplace_back(&a.optim, &b.optim);
  for (auto maps : maps) {
    ASSERT_EQ(maps.first->size(), maps.second->size());
    for (auto& [name, t] : *maps.first) {
      const Tensor& u = maps.second->at(name);
      ASSERT_EQ(t.numel(), u.numel()) << name;
      const size_t bytes = static_cast<size_t>(t.numel()) * element_size(t.dtype());
      EXPECT_EQ(0, std::memcmp(t.raw_data(), u.raw_data(), bytes)) << name << " differs: " << a_dir << " vs " << b_dir;
    }
  }
}

const std::string kShort = " --set train.eval_batches=1 --set data.workers=0";

void check_equal_to_one_process(const std::string& config, const std::string& name, int steps,
                                const std::string& extra) {
  const std::string common = kShort + " --set train.max_steps=" + std::to_string(steps) + " --set dist.shards=4" + extra;
  // The single process uses both cores; each rank one: thread counts do not change results.
  std::string one = out_dir(name + "_1");
  Result r1 = run(kKiln + " train " + config + " --out " + one + common + " --set threads=2");
  ASSERT_EQ(r1.rc, 0) << r1.out;
  for (int ranks : {2, 4}) {
    std::string dir = out_dir(name + "_" + std::to_string(ranks));
    Result r = run(mpirun(ranks) + kKiln + " train " + config + " --out " + dir + common +
                   " --set threads=1 --set dist.strategy=ddp");
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find("\"world_size\":" + std::to_string(ranks)), std::string::npos) << r.out;
    expect_same_bits(one, dir);
  }
}

TEST(DataParallel, MlpOnTwoAndFourRanksEqualsOneProcessBitwise) {
  check_equal_to_one_process(kMnist, "mlp", 50, "");
}

TEST(DataParallel, CnnOnTwoAndFourRanksEqualsOneProcessBitwise) {
  check_equal_to_one_process(kCnn, "cnn", 50, "");
}

TEST(DataParallel, WithAccumulationDropoutAndAugmentation) {
  check_equal_to_one_process(kMnist, "mlp_accum", 20,
                             " --set optim.grad_accum=2 --set model.dropout=0.2 --set data.augment=true");
}

void expect_error_on_every_rank(const Result& r, int ranks, const std::string& text) {
  EXPECT_NE(r.rc, 0) << r.out;
  for (int k = 0; k < ranks; ++k) {
    std::string line = "[rank " + std::to_string(k) + "/" + std::to_string(ranks) + "] kiln: error: ";
    size_t at = r.out.find(line);
    EXPECT_NE(at, std::string::npos) << "no error from rank " << k << ":\n" << r.out;
  }
  EXPECT_NE(r.out.find(text), std::string::npos) << r.out;
}

TEST(DataParallel, WorldSizeThatDoesNotFitTheShards) {
  Result r = run(mpirun(3) + kKiln + " train " + kMnist + " --out " + out_dir("bad_np") + kShort +
                 " --set dist.strategy=ddp --set dist.shards=4");
  expect_error_on_every_rank(r, 3, "dist.shards = 4 cannot be split over 3 ranks");
}

TEST(DataParallel, SeveralRanksWithoutAStrategy) {
  Result r = run(mpirun(2) + kKiln + " train " + kMnist + " --out " + out_dir("no_strategy") + kShort);
  expect_error_on_every_rank(r, 2, "launched with 2 ranks but dist.strategy is 'none'");
}

TEST(DataParallel, RanksWithDifferentConfigs) {
  const std::string base = kKiln + " train " + kMnist + " --out " + out_dir("mismatch") + kShort +
                           " --set dist.strategy=ddp";
  Result r = run("mpirun --oversubscribe --bind-to none -np 1 " + base + " : -np 1 " + base + " --set optim.lr=0.002");
  expect_error_on_every_rank(r, 2, "'lr = 0.002' here vs 'lr = 0.001' on rank 0");
}

TEST(FederatedAveraging, TwoClientsLogEveryRoundAndLearn) {
  const std::string dir = out_dir("fedavg");
  Result r = run(mpirun(2) + kKiln + " train " + kMnist + " --out " + dir +
                 " --set threads=1 --set data.workers=0 --set dist.strategy=fedavg --set dist.rounds=2");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("[rank 1/2] fedavg: client 1 holds 30000 examples"), std::string::npos) << r.out;
  std::ifstream metrics(dir + "/metrics.jsonl");
  std::vector<std::string> lines;
  for (std::string line; std::getline(metrics, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[1].find("\"round\":2"), std::string::npos) << lines[1];
  io::Checkpoint ck = io::load_checkpoint(dir + "/checkpoint.safetensors");
  EXPECT_GT(ck.state.step, 0);
  // Two IID clients, two rounds of one local epoch: the averaged mlp is well past chance.
  const size_t at = r.out.find("\"test_accuracy\":");
  ASSERT_NE(at, std::string::npos);
  EXPECT_GT(std::stod(r.out.substr(at + 16)), 0.8) << r.out;

  // One round, then --resume to two: the same averaged model as two rounds in one go.
  const std::string cut = out_dir("fedavg_cut");
  const std::string args = " train " + kMnist + " --out " + cut +
                           " --set threads=1 --set data.workers=0 --set dist.strategy=fedavg --set train.eval_batches=1";
  Result first = run(mpirun(2) + kKiln + args + " --set dist.rounds=1");
  ASSERT_EQ(first.rc, 0) << first.out;
  Result rest = run(mpirun(2) + kKiln + args + " --set dist.rounds=2 --resume");
  ASSERT_EQ(rest.rc, 0) << rest.out;
  expect_same_bits(dir, cut, /*with_optimizer=*/false);
}

TEST(PipelineTraining, BothSchedulesTrainTheSameModel) {
  // GPipe and 1F1B order the same micro-batch computations differently: the weights must match.
  const std::string common = " train " + kCnn + kShort + " --set threads=1 --set train.max_steps=20 "
                             "--set dist.strategy=pipeline --set dist.micro_batches=4";
  const std::string gpipe = out_dir("pp_gpipe"), one = out_dir("pp_1f1b");
  Result a = run(mpirun(2) + kKiln + common + " --set dist.schedule=gpipe --out " + gpipe);
  ASSERT_EQ(a.rc, 0) << a.out;
  EXPECT_NE(a.out.find("[rank 1/2] pipeline: stage 1 of 2 holds layers"), std::string::npos) << a.out;
  Result b = run(mpirun(2) + kKiln + common + " --set dist.schedule=1f1b --out " + one);
  ASSERT_EQ(b.rc, 0) << b.out;
  io::Checkpoint ca = io::load_checkpoint(gpipe + "/checkpoint.safetensors");
  io::Checkpoint cb = io::load_checkpoint(one + "/checkpoint.safetensors");
  for (auto& [name, t] : ca.model)
    EXPECT_EQ(0, std::memcmp(t.raw_data(), cb.model.at(name).raw_data(), static_cast<size_t>(t.numel()) * 4)) << name;
}

TEST(PipelineTraining, MoreStagesThanLayersFailsOnEveryRank) {
  Result r = run(mpirun(7) + kKiln + " train " + kMnist + " --out " + out_dir("pp_bad") + kShort +
                 " --set threads=1 --set dist.strategy=pipeline");
  expect_error_on_every_rank(r, 7, "pipeline: 7 stages for a model of 6 layers");
}

TEST(TensorParallelTraining, GptCharTrainsOnTwoRanksAndSavesTheWholeModel) {
  const std::string dir = out_dir("tp");
  Result r = run(mpirun(2) + kKiln + " train " KILN_SOURCE_DIR "/examples/char_gpt.toml --out " + dir +
                 " --set data.path=" KILN_SOURCE_DIR "/data/kjv.txt --set threads=1 --set data.workers=0"
                 " --set dist.strategy=tensor --set train.max_steps=3 --set train.eval_batches=1"
                 " --set sample.tokens=0 --set data.batch_size=4 --set data.context=32 --set schedule.name=constant");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("[rank 1/2] tensor parallel: each block's heads and MLP width split 2 ways"),
            std::string::npos) << r.out;
  // The checkpoint holds the whole gpt_char (gathered from both ranks), loadable by kiln eval.
  Result e = run(kKiln + " eval " + dir + "/checkpoint.safetensors --data text:test");
  ASSERT_EQ(e.rc, 0) << e.out;
}

TEST(MultiHost, DdpAcrossTwoNetworkHostsEqualsOneProcessBitwise) {
  // Two ranks on two "hosts" (network namespaces on a bridge, scripts/multihost.sh), talking TCP
  // over a 1 Gbit/s link, against one process with the same two data shards.
  const std::string common = " train " + kMnist + kShort + " --set threads=1 --set train.max_steps=20 --set dist.shards=2";
  const std::string one = out_dir("mh_one"), two = out_dir("mh_two");
  Result r1 = run(kKiln + common + " --out " + one);
  ASSERT_EQ(r1.rc, 0) << r1.out;
  Result r = run(KILN_SOURCE_DIR "/scripts/multihost.sh --hosts 2 --rate 1gbit -- 'mpirun --hostfile $KILN_HOSTFILE "
                 "-np 2 " + kKiln + common + " --set dist.strategy=ddp --out " + two + "'");
  if (r.rc == 77) GTEST_SKIP() << r.out;
  ASSERT_EQ(r.rc, 0) << r.out;
  expect_same_bits(one, two);
  // The gradients really crossed the link: host 1 sent at least its share of 20 allreduces.
  const size_t at = r.out.find("host 1 sent ");
  ASSERT_NE(at, std::string::npos) << r.out;
  EXPECT_GT(std::stoll(r.out.substr(at + 12)), 20 * 235146 * 4 / 2) << r.out;
}

TEST(ParameterServerTraining, OneServerTwoWorkersForEachConsistencyModel) {
  for (const char* mode : {"bsp", "asp", "ssp"}) {
    const std::string dir = out_dir(std::string("ps_") + mode);
    Result r = run(mpirun(3) + kKiln + " train " + kMnist + " --out " + dir + kShort +
                   " --set threads=1 --set train.max_steps=30 --set dist.strategy=ps --set dist.ps_mode=" + mode);
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find("[rank 0/3] ps: server 0 of 1"), std::string::npos) << r.out;
    // BSP: one update per clock from both workers' mean, never stale; ASP and SSP: every push.
    const std::string updates = std::string(mode) == "bsp" ? "ps: 30 updates, staleness histogram {\"0\":60}"
                                                           : "ps: 60 updates";
    EXPECT_NE(r.out.find(updates), std::string::npos) << r.out;
    io::Checkpoint ck = io::load_checkpoint(dir + "/checkpoint.safetensors");
    EXPECT_EQ(ck.model.size(), 6u);
  }
  // BSP is deterministic: 20 steps + resume to 40 equals 40 steps, from the servers' per-rank
  // optimiser files and the workers' positions in the checkpoint.
  const std::string args = " train " + kMnist + kShort + " --set threads=1 --set dist.strategy=ps "
                           "--set train.checkpoint_every=10";
  const std::string full = out_dir("ps_full"), cut = out_dir("ps_cut");
  Result f = run(mpirun(3) + kKiln + args + " --set train.max_steps=40 --out " + full);
  ASSERT_EQ(f.rc, 0) << f.out;
  Result c1 = run(mpirun(3) + kKiln + args + " --set train.max_steps=20 --out " + cut);
  ASSERT_EQ(c1.rc, 0) << c1.out;
  Result c2 = run(mpirun(3) + kKiln + args + " --set train.max_steps=40 --out " + cut + " --resume");
  ASSERT_EQ(c2.rc, 0) << c2.out;
  expect_same_bits(full, cut, /*with_optimizer=*/false);

  Result alone = run(mpirun(1) + kKiln + " train " + kMnist + " --out " + out_dir("ps_alone") + kShort +
                     " --set dist.strategy=ps");
  EXPECT_NE(alone.rc, 0);
  EXPECT_NE(alone.out.find("kiln: error: ps: 1 server(s) need at least one more rank for a worker"), std::string::npos)
      << alone.out;
}

int64_t json_int(const std::string& out, const std::string& key) {
  const size_t at = out.find("\"" + key + "\":");
  return at == std::string::npos ? -1 : std::stoll(out.substr(at + key.size() + 3));
}

TEST(DataParallel, ZeroStageOneEqualsOneProcessBitwiseWithAShareOfTheOptimiserState) {
  const std::string common = " train " + kMnist + kShort + " --set train.max_steps=30 --set dist.shards=4";
  const std::string one = out_dir("zero_1");
  Result r1 = run(kKiln + common + " --set threads=2 --out " + one);
  ASSERT_EQ(r1.rc, 0) << r1.out;
  const int64_t whole_state = json_int(r1.out, "optimizer_state_bytes_rank0");
  EXPECT_GT(whole_state, 2 * 235146 * 4 - 1) << r1.out;  // Adam: two moments per parameter
  for (int ranks : {2, 4}) {
    const std::string dir = out_dir("zero_" + std::to_string(ranks));
    Result r = run(mpirun(ranks) + kKiln + common + " --set threads=1 --set dist.strategy=ddp --set dist.zero=true" +
                   " --out " + dir);
    ASSERT_EQ(r.rc, 0) << r.out;
    expect_same_bits(one, dir, /*with_optimizer=*/false);
    const int64_t mine = json_int(r.out, "optimizer_state_bytes_rank0");
    EXPECT_LE(mine, whole_state / ranks + 64 * 4) << r.out;  // 1/N of the moments, plus padding
  }
}

// Stopped at step 20 and resumed to 40 vs 40 steps in one go: the same weights, bit for bit,
// with the optimiser state saved per rank (optim.step<S>.rank<R>.safetensors).
void check_resume_per_rank(const std::string& name, const std::string& args, int ranks) {
  const std::string full = out_dir(name + "_full"), cut = out_dir(name + "_cut");
  Result a = run(mpirun(ranks) + kKiln + args + " --set train.max_steps=40 --out " + full);
  ASSERT_EQ(a.rc, 0) << a.out;
  Result b = run(mpirun(ranks) + kKiln + args + " --set train.max_steps=20 --out " + cut);
  ASSERT_EQ(b.rc, 0) << b.out;
  for (int r = 0; r < ranks; ++r)
    EXPECT_TRUE(fs::exists(cut + "/optim.step20.rank" + std::to_string(r) + ".safetensors")) << "rank " << r;
  Result c = run(mpirun(ranks) + kKiln + args + " --set train.max_steps=40 --out " + cut + " --resume");
  ASSERT_EQ(c.rc, 0) << c.out;
  expect_same_bits(full, cut, /*with_optimizer=*/false);
  EXPECT_FALSE(fs::exists(cut + "/optim.step20.rank0.safetensors")) << "old per-rank files are removed";
  // Resuming with another world size cannot use the per-rank state: a clear error.
  Result d = run(mpirun(ranks + 1) + kKiln + args + " --set train.max_steps=60 --out " + cut + " --resume");
  EXPECT_NE(d.rc, 0);
  EXPECT_NE(d.out.find("per-rank optimiser state needs as many"), std::string::npos) << d.out;
}

TEST(Resume, PipelineZeroAndTensorParallelContinueBitwise) {
  check_resume_per_rank("rs_pipe", " train " + kCnn + kShort + " --set threads=1 --set dist.strategy=pipeline", 2);
  check_resume_per_rank("rs_zero", " train " + kMnist + kShort + " --set threads=1 --set dist.strategy=ddp "
                        "--set dist.zero=true --set dist.shards=2", 2);
  check_resume_per_rank("rs_tp", " train " KILN_SOURCE_DIR "/examples/char_gpt.toml --set data.path=" KILN_SOURCE_DIR
                        "/data/kjv.txt --set threads=1 --set data.workers=0 --set dist.strategy=tensor "
                        "--set train.eval_batches=1 --set sample.tokens=0 --set data.batch_size=4 "
                        "--set data.context=32 --set schedule.name=constant", 2);
}

TEST(Launch, RunsTheCommandOnNRanksThroughMpirun) {
  Result r = run(kKiln + " launch -n 2 -- train " + kMnist + " --out " + out_dir("launch") + kShort +
                 " --set threads=1 --set train.max_steps=5 --set dist.strategy=ddp");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("[rank 1/2] ddp: data shards 1 of 2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"world_size\":2"), std::string::npos) << r.out;
  Result nested = run(kKiln + " launch -n 2 -- launch -n 2 -- info");
  EXPECT_NE(nested.rc, 0);
  EXPECT_NE(nested.out.find("launch: the command cannot be another launch"), std::string::npos) << nested.out;
}

// The pid of the process with OMPI_COMM_WORLD_RANK=rank among mpirun's children.
pid_t find_rank(pid_t mpirun_pid, int rank) {
  const std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string comm, state;
    long self = 0, ppid = 0;
    if (!(stat >> self >> comm >> state >> ppid) || ppid != mpirun_pid) continue;
    std::ifstream env(e.path() / "environ");
    std::string var;
    while (std::getline(env, var, '\0'))
      if (var == want) return static_cast<pid_t>(self);
  }
  return -1;
}

TEST(DataParallel, KilledRankEndsTheJobAndResumeMatchesAnUninterruptedRun) {
  const std::string args = " train " + kCnn + kShort +
                           " --set threads=1 --set dist.strategy=ddp --set train.max_steps=120 "
                           "--set train.checkpoint_every=10";
  const std::string full = out_dir("fault_full"), cut = out_dir("fault_cut");
  Result ref = run(mpirun(2) + kKiln + args + " --out " + full);
  ASSERT_EQ(ref.rc, 0) << ref.out;

  const std::string log = out_dir("fault_log") + ".txt";
  fs::create_directories(fs::path(log).parent_path());
  pid_t job = fork();
  if (job == 0) {
    FILE* f = freopen(log.c_str(), "w", stdout);
    dup2(fileno(f), 2);
    std::string cmd = "exec " + mpirun(2) + kKiln + args + " --out " + cut;
    execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
    _exit(127);
  }
  // Mid-run: once the first checkpoint exists.
  auto start = std::chrono::steady_clock::now();
  while (!fs::exists(cut + "/checkpoint.safetensors") && std::chrono::steady_clock::now() - start < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  pid_t victim = find_rank(job, 1);
  ASSERT_GT(victim, 0) << "rank 1 not found";
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  auto killed = std::chrono::steady_clock::now();
  int status = 0;
  while (waitpid(job, &status, WNOHANG) == 0 && std::chrono::steady_clock::now() - killed < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  std::ifstream in(log);
  std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::printf("job ended %.2f s after rank 1 was killed\n", seconds);
  EXPECT_LT(seconds, 30.0) << out;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << out;
  EXPECT_NE(out.find("rank 1"), std::string::npos) << "the message must name the lost rank:\n" << out;
  io::Checkpoint at_kill = io::load_checkpoint(cut + "/checkpoint.safetensors");
  EXPECT_LT(at_kill.state.step, 120) << "the job finished before the kill; nothing was tested";

  Result resumed = run(mpirun(2) + kKiln + args + " --out " + cut + " --resume");
  ASSERT_EQ(resumed.rc, 0) << resumed.out;
  expect_same_bits(full, cut);
}

}  // namespace
}  // namespace kiln
