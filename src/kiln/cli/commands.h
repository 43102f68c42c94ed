// The kiln subcommands. Each returns the process exit code; errors are thrown as kiln::Error and
// turned into one line on stderr by main.
#pragma once

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

struct EvalArgs {
  std::string checkpoint;
  std::string data = "fashion-mnist:test";  // or text:test for text models
  int64_t batch_size = 256;
};
int run_eval(const EvalArgs& args);

struct BenchTrainArgs {
  std::string model = "mlp";
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

int run_info();

}  // namespace kiln::cli
