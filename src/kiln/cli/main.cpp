// The kiln command: parses arguments with CLI11 and dispatches to a subcommand. Every Kiln error
// becomes one line on stderr and exit code 1; usage errors exit with 2.
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "kiln/cli/commands.h"
#include "kiln/core/error.h"

namespace {

// "message\nhelp: hint" -> "message (help: hint)": one line, as scripts and logs expect.
std::string one_line(std::string s) {
  for (auto& ch : s)
    if (ch == '\n') ch = ' ';
  return s;
}

// Large heap blocks would otherwise be mmap'd and unmapped on every step (page faults each time);
// keeping them in the heap makes malloc reuse them. PyTorch needs the same setting (through
// environment variables) to reach its best speed here. Tensor storage no longer depends on this:
// it comes from Kiln's caching allocator (core/allocator.h); the thresholds still help the other
// heap allocations (kernel temporaries, autograd bookkeeping, data loading).
void tune_malloc() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc caps the threshold at 32 MiB
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

}  // namespace

int main(int argc, char** argv) {
  tune_malloc();
  CLI::App app{"Kiln: train, evaluate and benchmark neural networks"};
  app.require_subcommand(1);

  kiln::cli::TrainArgs train;
  auto* t = app.add_subcommand("train", "Train a model from a TOML config");
  t->add_option("config", train.config, "config file (TOML)")->required();
  t->add_option("--set", train.overrides, "override a config key: --set optim.lr=0.01 (repeatable)");
  t->add_option("--out", train.out_dir, "run directory for checkpoints and metrics")->capture_default_str();
  t->add_flag("--resume", train.resume, "continue from the run directory's checkpoint");

  kiln::cli::EvalArgs eval;
  auto* e = app.add_subcommand("eval", "Evaluate a checkpoint: JSON with accuracy and loss");
  e->add_option("checkpoint", eval.checkpoint, "checkpoint file (.safetensors)")->required();
  e->add_option("--data", eval.data, "data set and split, e.g. fashion-mnist:test")->capture_default_str();
  e->add_option("--batch", eval.batch_size, "batch size")->capture_default_str()->check(CLI::PositiveNumber);

  kiln::cli::BenchTrainArgs bench;
  auto* b = app.add_subcommand("bench", "Benchmarks");
  b->require_subcommand(1);
  auto* bt = b->add_subcommand("train", "Training step speed on synthetic data: one JSON line");
  bt->add_option("--model", bench.model, "mlp | cnn | resnet_small | gpt_char")->capture_default_str();
  bt->add_option("--batch", bench.batch, "batch size (default 128 images or 32 sequences)");
  bt->add_option("--steps", bench.steps, "timed steps")->capture_default_str()->check(CLI::PositiveNumber);
  bt->add_option("--warmup", bench.warmup, "untimed steps first")->capture_default_str();
  bt->add_option("--threads", bench.threads, "intra-op threads")->capture_default_str()->check(CLI::PositiveNumber);

  kiln::cli::BenchTrainArgs infer;
  infer.steps = 200;
  infer.warmup = 20;
  infer.threads = 1;
  auto* bi = b->add_subcommand("infer", "Inference latency (no autograd) on synthetic data: one JSON line");
  bi->add_option("--model", infer.model, "mlp | cnn | resnet_small | gpt_char")->capture_default_str();
  bi->add_option("--batch", infer.batch, "batch size (default 1)");
  bi->add_option("--steps", infer.steps, "timed forward passes")->capture_default_str()->check(CLI::PositiveNumber);
  bi->add_option("--warmup", infer.warmup, "untimed passes first")->capture_default_str();
  bi->add_option("--threads", infer.threads, "intra-op threads")->capture_default_str()->check(CLI::PositiveNumber);

  kiln::cli::TuneArgs tune;
  auto* tk = app.add_subcommand("tune-kernels", "Auto-tune GEMM blocking and conv algorithms into the tuning cache");
  tk->add_option("--model", tune.models, "models whose training step and inference to tune")->capture_default_str();
  tk->add_option("--gemm", tune.gemm_shapes, "extra GEMM problems MxNxK (repeatable)");
  tk->add_option("--batch", tune.batch, "training batch (default 128 images or 32 sequences)");
  tk->add_option("--threads", tune.threads, "threads to tune for")->capture_default_str()->check(CLI::PositiveNumber);

  app.add_subcommand("info", "Version, SIMD level, BLAS, threads, CUDA");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    return app.exit(err);
  }
  try {
    if (t->parsed()) return kiln::cli::run_train(train);
    if (e->parsed()) return kiln::cli::run_eval(eval);
    if (bt->parsed()) return kiln::cli::run_bench_train(bench);
    if (bi->parsed()) return kiln::cli::run_bench_infer(infer);
    if (tk->parsed()) return kiln::cli::run_tune_kernels(tune);
    return kiln::cli::run_info();
  } catch (const kiln::Error& err) {
    std::fprintf(stderr, "kiln: error: %s\n", one_line(err.what()).c_str());
    return 1;
  } catch (const std::exception& err) {
    std::fprintf(stderr, "kiln: error: %s\n", one_line(err.what()).c_str());
    return 1;
  }
}
