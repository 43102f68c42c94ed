// The kiln command: parses arguments with CLI11 and dispatches to a subcommand. Every Kiln error
// becomes one line on stderr and exit code 1; usage errors exit with 2.
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <thread>
#include <string>

#include "kiln/cli/commands.h"
#include "kiln/dist/communicator.h"
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

  kiln::cli::LaunchArgs launch;
  auto* ln = app.add_subcommand("launch", "Run a kiln command on N MPI ranks: kiln launch -n 2 -- train CONFIG");
  ln->add_option("-n,--ranks", launch.ranks, "number of ranks")->capture_default_str()->check(CLI::PositiveNumber);
  ln->add_option("--hostfile", launch.hostfile, "mpirun hostfile (default: all ranks on this machine)");
  ln->add_option("--mpi-arg", launch.mpi_args, "extra mpirun argument (repeatable)");
  ln->add_option("command", launch.command, "the kiln command and its arguments, after --")->required();

  kiln::cli::EvalArgs eval;
  auto* e = app.add_subcommand("eval", "Evaluate a checkpoint: JSON with accuracy and loss");
  e->add_option("checkpoint", eval.checkpoint, "checkpoint file (.safetensors) or ONNX model (.onnx)")->required();
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
  bi->add_option("file", infer.model_file, "an .onnx model (instead of --model)");
  bi->add_option("--model", infer.model, "mlp | cnn | resnet_small | gpt_char")->capture_default_str();
  bi->add_option("--engine", infer.engine, "eager | graph (--model traced and compiled)")
      ->capture_default_str()
      ->check(CLI::IsMember({"eager", "graph"}));
  bi->add_flag("--no-optimize", infer.no_optimize, "run the graph without the compiler passes");
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

  kiln::cli::ExportArgs exp;
  auto* ex = app.add_subcommand("export", "Export a checkpoint's model (traced) to ONNX");
  ex->add_option("checkpoint", exp.checkpoint, "checkpoint file (.safetensors)");
  ex->add_option("--model", exp.model, "or a reference model with fresh weights: mlp | cnn | resnet_small | gpt_char");
  ex->add_option("--seed", exp.seed, "weight seed for --model")->capture_default_str();
  ex->add_option("--format", exp.format, "onnx")->capture_default_str();
  ex->add_option("-o,--output", exp.output, "output file")->required();

  kiln::cli::RunModelArgs runm;
  auto* rn = app.add_subcommand("run", "Run an ONNX model on inputs from .pb/.npy files; write its outputs");
  rn->add_option("model", runm.model, "ONNX model (.onnx)")->required();
  rn->add_option("--input", runm.inputs, "NAME=FILE (.pb TensorProto or .npy), repeatable");
  rn->add_option("--output-dir", runm.output_dir, "where <output>.pb and .npy go")->capture_default_str();
  rn->add_flag("--no-optimize", runm.no_optimize, "run the graph as imported");

  kiln::cli::CompileArgs comp;
  auto* cp = app.add_subcommand("compile", "Optimise an ONNX model: pass log, fused kernels, memory plan");
  cp->add_option("model", comp.model, "ONNX model (.onnx)")->required();
  cp->add_option("--print-after", comp.print_after, "print the graph after this pass (or all)");
  cp->add_flag("--report", comp.report, "op histogram, fused kernels, arena vs naive memory");
  cp->add_option("--batch", comp.batch, "batch size for the memory report")->capture_default_str();

  app.add_subcommand("info", "Version, SIMD level, BLAS, threads, CUDA");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    return app.exit(err);
  }
  auto run_command = [&]() -> int {
    if (t->parsed()) return kiln::cli::run_train(train);
    if (e->parsed()) return kiln::cli::run_eval(eval);
    if (ln->parsed()) return kiln::cli::run_launch(launch);
    if (bt->parsed()) return kiln::cli::run_bench_train(bench);
    if (bi->parsed()) return kiln::cli::run_bench_infer(infer);
    if (tk->parsed()) return kiln::cli::run_tune_kernels(tune);
    if (ex->parsed()) return kiln::cli::run_export(exp);
    if (rn->parsed()) return kiln::cli::run_model(runm);
    if (cp->parsed()) return kiln::cli::run_compile(comp);
    return kiln::cli::run_info();
  };
  try {
    int rc = run_command();
    kiln::dist::shutdown();
    return rc;
  } catch (const std::exception& err) {
    std::fprintf(stderr, "%skiln: error: %s\n", kiln::dist::log_prefix().c_str(), one_line(err.what()).c_str());
    // A failing rank of a distributed job leaves at once: its peers may be gone or blocked, so
    // neither MPI_Finalize nor static destructors may wait for them. mpirun sees the exit code
    // and ends the job.
    if (kiln::dist::launched_by_mpi()) {
      std::fflush(nullptr);
      // Peers failing the same start-up check reach it within milliseconds; a short grace lets
      // them print their own error before mpirun, seeing this exit, kills them.
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      std::_Exit(1);
    }
    return 1;
  }
}
