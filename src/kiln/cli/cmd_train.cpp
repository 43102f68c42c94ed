// kiln train and kiln eval.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "kiln/cli/commands.h"
#include "kiln/cli/evaluate.h"
#include "kiln/cli/task.h"
#include "kiln/cli/trainer.h"
#include "kiln/core/thread_pool.h"
#include "kiln/dist/communicator.h"
#include "kiln/io/checkpoint.h"

namespace kiln::cli {

int run_train(const TrainArgs& args) {
  TrainConfig config = load_config(args.config, args.overrides);
  TrainOptions opt{args.out_dir, args.resume};
  TrainSummary s = train(config, opt);
  nlohmann::json j = {{"model", s.model},
                      {"epochs", s.epochs},
                      {"steps", s.steps},
                      {"train_loss", s.train_loss},
                      {"test_loss", s.test_loss},
                      {"test_accuracy", s.test_accuracy},
                      {s.unit == "tokens" ? "tokens_per_s" : "images_per_s", s.rate},
                      {"checkpoint", s.checkpoint},
                      {"seconds", s.seconds}};
  if (s.world_size > 1) j["world_size"] = s.world_size;
  if (s.allreduce_seconds > 0) {
    j["allreduce_seconds"] = s.allreduce_seconds;
    j["allreduce_exposed_seconds"] = s.allreduce_exposed_seconds;
    j["allreduce_hidden_fraction"] =
        s.allreduce_seconds > 0 ? 1.0 - s.allreduce_exposed_seconds / s.allreduce_seconds : 0.0;
  }
  if (s.staleness_mean > 0) j["mean_staleness"] = s.staleness_mean;
  if (s.optimizer_state_bytes > 0) j["optimizer_state_bytes_rank0"] = s.optimizer_state_bytes;
  if (s.world_size > 1) {
    j["bytes_sent_rank0"] = s.bytes_sent;
    j["bytes_sent_per_step_rank0"] = s.steps > 0 ? s.bytes_sent / s.steps : 0;
  }
  if (!dist::launched_by_mpi() || dist::world().rank() == 0) std::printf("%s\n", j.dump().c_str());
  return 0;
}

int run_eval_onnx(const EvalArgs& args);  // cmd_graph.cpp

int run_eval(const EvalArgs& args) {
  if (args.checkpoint.size() > 5 && args.checkpoint.ends_with(".onnx")) return run_eval_onnx(args);
  io::Checkpoint ckpt = io::load_checkpoint(args.checkpoint);
  TrainConfig config = parse_config(ckpt.state.config_toml, args.checkpoint + " (embedded config)");
  auto colon = args.data.find(':');
  std::string source = args.data.substr(0, colon);
  std::string split = colon == std::string::npos ? "test" : args.data.substr(colon + 1);
  KILN_CHECK(split == "test" || split == "train", "--data '", args.data, "': split must be 'test' or 'train'");
  KILN_CHECK(source == config.data.dataset, "--data '", args.data, "': the checkpoint's model was trained on '",
             config.data.dataset, "'");
  set_num_threads(static_cast<int>(config.threads));
  Task task = make_task(config, &ckpt.state.extra);
  nn::ModulePtr model = nn::make_model(task.spec, config.seed);
  model->load_state_dict(ckpt.model);
  EvalResult r = evaluate(*model, split == "test" ? task.test : task.train, args.batch_size);
  nlohmann::json j = {{"checkpoint", args.checkpoint}, {"model", config.model.name}, {"data", args.data},
                      {"accuracy", r.accuracy},        {"loss", r.loss},            {"count", r.count}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace kiln::cli
