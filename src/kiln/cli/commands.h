// The kiln subcommands. Each returns the process exit code; errors are thrown as kiln::Error and
// turned into one line on stderr by main.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::cli {

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string out_dir = "runs/latest";
  bool resume = false;
};
int run_train(const TrainArgs& args);

// kiln launch -n N [--hostfile F] [--mpi-arg A]... -- COMMAND...: runs `kiln COMMAND` on N ranks
// through mpirun.
struct LaunchArgs {
  int ranks = 2;
  std::string hostfile;
  std::vector<std::string> mpi_args;
  std::vector<std::string> command;
};
int run_launch(const LaunchArgs& args);

struct EvalArgs {
  std::string checkpoint;
  std::string data = "fashion-mnist:test";  // or text:test for text models
  int64_t batch_size = 256;
};
int run_eval(const EvalArgs& args);

struct BenchTrainArgs {
  std::string model = "mlp";
  std::string model_file;         // bench infer: an .onnx file instead of --model
  std::string engine = "eager";   // bench infer: eager | graph (traced and compiled)
  bool no_optimize = false;       // bench infer on a graph: skip the passes
  int64_t batch = 0;  // 0: 128 for images, 32 sequences for gpt_char
  int64_t steps = 30;
  int64_t warmup = 5;
  int64_t threads = 2;
};
int run_bench_train(const BenchTrainArgs& args);
int run_bench_infer(const BenchTrainArgs& args);  // batch defaults to 1 there

struct TuneArgs {
  std::vector<std::string> models{"mlp", "cnn", "gpt_char"};
  std::vector<std::string> gemm_shapes;  // extra "MxNxK" problems
  int64_t batch = 0;                     // training batch; 0: the model's default
  int64_t threads = 2;
};
int run_tune_kernels(const TuneArgs& args);

// kiln export CHECKPOINT --format onnx -o model.onnx
struct ExportArgs {
  std::string checkpoint;  // or:
  std::string model;       // a reference model with fresh weights (benchmarks, tests)
  uint64_t seed = 0;
  std::string format = "onnx";
  std::string output;
};
int run_export(const ExportArgs& args);

// kiln run MODEL.onnx --input NAME=FILE ... [--output-dir DIR] [--no-optimize]
struct RunModelArgs {
  std::string model;
  std::vector<std::string> inputs;  // NAME=FILE, FILE a .pb TensorProto or a .npy array
  std::string output_dir = ".";
  bool no_optimize = false;
};
int run_model(const RunModelArgs& args);

// kiln compile MODEL.onnx [--print-after PASS] [--report] [--batch N]
struct CompileArgs {
  std::string model;
  std::string print_after;
  bool report = false;
  int64_t batch = 64;  // the binding of the symbolic batch for the memory report
};
int run_compile(const CompileArgs& args);

int run_info();

}  // namespace kiln::cli
