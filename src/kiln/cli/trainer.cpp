#include "kiln/cli/trainer.h"

#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kiln/autograd/engine.h"
#include "kiln/cli/evaluate.h"
#include "kiln/cli/progress.h"
#include "kiln/cli/task.h"
#include "kiln/core/rng.h"
#include "kiln/core/thread_pool.h"
#include "kiln/data/augment.h"
#include "kiln/cli/rank_state.h"
#include "kiln/cli/train_step.h"
#include "kiln/dist/consistency.h"
#include "kiln/dist/local_communicator.h"
#include "kiln/data/data_loader.h"
#include "kiln/data/fashion_mnist.h"
#include "kiln/io/atomic_file.h"
#include "kiln/io/checkpoint.h"
#include "kiln/io/metrics_log.h"
#include "kiln/io/tensorboard.h"
#include "kiln/nn/sampling.h"
#include "kiln/ops/ops.h"
#include "kiln/optim/lr_schedule.h"

namespace kiln::cli {

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& c, std::vector<Tensor> params) {
  if (c.optim.name == "sgd")
    return optim::make_sgd(std::move(params), {c.optim.lr, c.optim.momentum, c.optim.weight_decay, c.optim.nesterov});
  optim::AdamOptions a{c.optim.lr, c.optim.beta1, c.optim.beta2, c.optim.eps, c.optim.weight_decay};
  return c.optim.name == "adamw" ? optim::make_adamw(std::move(params), a) : optim::make_adam(std::move(params), a);
}

namespace {

std::unique_ptr<optim::LrSchedule> make_schedule(const TrainConfig& c, int64_t total_steps) {
  if (c.schedule.name == "step") return optim::step_lr(c.optim.lr, c.schedule.step_size, c.schedule.gamma);
  if (c.schedule.name == "cosine")
    return optim::cosine_lr(c.optim.lr, c.schedule.warmup_steps, total_steps, c.schedule.min_lr);
  return optim::constant_lr(c.optim.lr);
}

std::string sample_text(nn::Module& model, const Task& task, const TrainConfig& c) {
  std::vector<int64_t> prompt;
  for (char ch : c.sample.prompt) {
    auto pos = task.vocab.find(ch);
    if (pos != std::string::npos) prompt.push_back(static_cast<int64_t>(pos));
  }
  if (prompt.empty()) prompt.push_back(0);
  Generator gen(c.seed ^ 0x5a3d1e);
  nn::SampleOptions so;
  so.temperature = c.sample.temperature;
  so.top_k = c.sample.top_k;
  so.context = c.data.context;
  std::vector<int64_t> ids = nn::generate(model, prompt, c.sample.tokens, gen, so);
  std::string out;
  for (int64_t id : ids) out += task.vocab[static_cast<size_t>(id)];
  return out;
}

}  // namespace

std::string checkpoint_path(const std::string& out_dir) { return out_dir + "/checkpoint.safetensors"; }

data::LoaderOptions loader_options(const TrainConfig& c) {
  data::LoaderOptions lo;
  lo.batch_size = c.data.batch_size;
  lo.shuffle = c.data.shuffle;
  lo.drop_last = c.data.drop_last;
  lo.num_workers = static_cast<int>(c.data.workers);
  lo.seed = c.seed;
  return lo;
}

TrainSummary start_summary(const TrainConfig& c, const Task& task, const std::string& out_dir, int world_size) {
  TrainSummary summary;
  summary.model = c.model.name;
  summary.unit = task.sample_unit;
  summary.checkpoint = checkpoint_path(out_dir);
  summary.world_size = world_size;
  return summary;
}

namespace {
// A run killed while writing a checkpoint leaves its temporary file behind (the previous
// checkpoint is intact: the rename never happened). Remove such leftovers before going on.
void remove_stale_temporaries(const std::string& out_dir) {
  for (const auto& e : std::filesystem::directory_iterator(out_dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) std::filesystem::remove(e.path());
}
}  // namespace

namespace {
// The communicator for this run: the job's under mpirun, one local rank otherwise. A world size
// that does not fit the strategy is an error on every rank.
dist::Communicator& communicator_for(const TrainConfig& c) {
  static dist::LocalCommunicator local;
  if (!dist::launched_by_mpi()) return local;
  dist::Communicator& world = dist::world();
  dist::check_all(world, c.dist.strategy != "none" || world.size() == 1,
                  detail::concat("dist: launched with ", world.size(), " ranks but dist.strategy is 'none'",
                                 "\nhelp: --set dist.strategy=ddp, or start one process"));
  return world;
}

// Batch b's size before sharding: what each shard's loss weight is relative to.
int64_t global_batch_size(const data::DataLoader& loader, int64_t b, int64_t batch_size) {
  return std::min(batch_size, loader.dataset().size() - b * batch_size);
}
}  // namespace

TrainSummary train_fedavg(const TrainConfig& c, const TrainOptions& opt, dist::Communicator& comm);  // train_fedavg.cpp
TrainSummary train_ps(const TrainConfig& c, const TrainOptions& opt, dist::Communicator& comm);      // train_ps.cpp

TrainSummary train(const TrainConfig& config, const TrainOptions& opt) {
  TrainConfig c = config;  // a resumed pipeline adopts the checkpoint's stage split (below)
  auto wall_start = std::chrono::steady_clock::now();
  dist::Communicator& comm = communicator_for(c);
  const bool root = comm.rank() == 0;
  dist::Work::set_default_timeout(std::chrono::milliseconds(static_cast<int64_t>(c.dist.timeout_s * 1000)));
  dist::check_same_text(comm, to_toml(c), "config");
  if (c.dist.strategy == "fedavg") return train_fedavg(c, opt, comm);
  if (c.dist.strategy == "ps") return train_ps(c, opt, comm);
  set_num_threads(static_cast<int>(c.threads));
  manual_seed(c.seed);
  std::filesystem::create_directories(opt.out_dir);
  if (root) remove_stale_temporaries(opt.out_dir);
  const std::string ckpt_file = checkpoint_path(opt.out_dir);

  std::optional<io::Checkpoint> resumed;
  if (opt.resume) {
    dist::check_all(comm, std::filesystem::exists(ckpt_file),
                    detail::concat("--resume: no checkpoint at ", ckpt_file));
    resumed = io::load_checkpoint(ckpt_file);
    KILN_CHECK(resumed->state.model_name == c.model.name, "--resume: checkpoint ", ckpt_file, " holds model '",
               resumed->state.model_name, "' but the config asks for '", c.model.name, "'");
  }

  Task task = make_task(c, resumed ? &resumed->state.extra : nullptr);
  nn::ModulePtr model = nn::make_model(task.spec, c.seed);
  // The weights first: strategies copy slices of them when they start (tensor parallel, ZeRO).
  if (resumed) {
    model->load_state_dict(resumed->model);
    auto ranks = resumed->state.extra.find(kPerRankOptimizer);
    dist::check_all(comm, ranks == resumed->state.extra.end() || ranks->second == std::to_string(comm.size()),
                    detail::concat("--resume: the checkpoint was written by ",
                                   ranks == resumed->state.extra.end() ? "" : ranks->second,
                                   " ranks; its per-rank optimiser state needs as many, not ", comm.size()));
    auto split = resumed->state.extra.find(kPipelineSplit);
    if (split != resumed->state.extra.end()) c.dist.split = split->second;
  }
  std::unique_ptr<GradientStep> grads = make_gradient_step(c, comm, model, task, opt.out_dir);
  auto optimizer = make_optimizer(c, grads->trained_parameters());
  if (resumed) {
    // Whole optimiser state in the checkpoint, or one file per rank (rank_state.h).
    auto per_rank = resumed->state.extra.find(kPerRankOptimizer);
    const bool saved_per_rank = per_rank != resumed->state.extra.end();
    dist::check_all(comm, saved_per_rank == !grads->whole_optimizer(),
                    detail::concat("--resume: the checkpoint keeps its optimiser state ",
                                   saved_per_rank ? "per rank" : "whole", ", but this run's strategy keeps it ",
                                   grads->whole_optimizer() ? "whole" : "per rank",
                                   "\nhelp: resume with the strategy (and dist.zero) the run was started with"));
    if (saved_per_rank) {
      optimizer->load_state_dict(load_rank_optimizer(opt.out_dir, resumed->state.step, comm.rank()));
    } else {
      optimizer->load_state_dict(resumed->optim);
    }
  }

  data::LoaderOptions lo = loader_options(c);
  grads->configure_loader(lo);
  if (c.data.augment && !task.is_text) {
    // Pad with the normalised value of a black pixel, so padding looks like the image border.
    lo.transform = data::make_image_augment({4, true, -data::kFashionMnistMean / data::kFashionMnistStd});
  }
  data::DataLoader loader(task.train, lo);
  const int64_t batches = loader.batches_per_epoch();
  int64_t steps_per_epoch = (batches + c.optim.grad_accum - 1) / c.optim.grad_accum;
  int64_t total_steps = c.train.max_steps > 0 ? c.train.max_steps : steps_per_epoch * c.train.epochs;
  auto schedule = make_schedule(c, total_steps);

  io::TrainingState state;
  state.config_toml = to_toml(c);
  state.model_name = c.model.name;
  state.extra = task.extra;
  if (!grads->whole_optimizer()) state.extra[kPerRankOptimizer] = std::to_string(comm.size());
  if (!grads->split().empty()) state.extra[kPipelineSplit] = grads->split();
  if (resumed) {
    state.step = resumed->state.step;
    state.loader = resumed->state.loader;
    state.epoch_loss_sum = resumed->state.epoch_loss_sum;
    state.epoch_batches = resumed->state.epoch_batches;
    default_generator().set_state(resumed->state.rng);
    loader.set_state(state.loader);
  } else if (root) {
    io::write_file_atomic(opt.out_dir + "/config.toml", state.config_toml);
  }
  // Only rank 0 writes metrics and checkpoints.
  std::optional<io::MetricsLog> metrics;
  std::optional<io::TensorBoardWriter> tb;
  if (root) {
    metrics.emplace(opt.out_dir + "/metrics.jsonl", /*append=*/opt.resume);
    tb.emplace(opt.out_dir);
  }
  Progress progress(c.train.log_every, task.sample_unit, root);
  auto save = [&] {
    // Every rank must have reached the same step before rank 0 writes it down.
    KILN_CHECK(dist::all_equal(comm, state.step), "dist: ranks disagree on the step (this rank is at ", state.step,
               ") before a checkpoint");
    grads->gather_model();
    const bool per_rank = !grads->whole_optimizer();
    if (per_rank) {
      save_rank_optimizer(opt.out_dir, state.step, comm.rank(), *optimizer);
      comm.barrier()->wait();  // every rank's file exists before the checkpoint names this step
    }
    if (root) {
      state.loader = loader.state();
      state.rng = default_generator().state();
      io::save_checkpoint(ckpt_file, *model, per_rank ? nullptr : optimizer.get(), state);
    }
    if (per_rank) {
      comm.barrier()->wait();  // the checkpoint names this step now: older files can go
      remove_old_rank_optimizers(opt.out_dir, state.step, comm.rank());
    }
  };

  TrainSummary summary = start_summary(c, task, opt.out_dir, comm.size());
  const int64_t bytes_at_start = comm.stats().bytes_sent;
  model->train();
  bool stop = c.train.max_steps > 0 && state.step >= c.train.max_steps, ran_epoch = false;
  while (!stop && loader.state().epoch < c.train.epochs) {
    int64_t epoch = loader.state().epoch;
    int64_t first = loader.state().batch;
    progress.start_epoch(epoch, c.train.epochs, batches, first);
    int64_t micro = 0;
    while (auto batch = loader.next()) {
      const int64_t index = loader.state().batch - 1;
      const bool last_in_epoch = index + 1 == batches;
      const bool step_ends = micro + 1 == c.optim.grad_accum || last_in_epoch;
      const int64_t whole = global_batch_size(loader, index, c.data.batch_size);
      const double loss_value = grads->run(*batch, whole, micro, step_ends, state.step);
      KILN_CHECK(std::isfinite(loss_value), "train: loss became ", loss_value, " at step ", state.step,
                 "\nhelp: lower optim.lr or set optim.grad_clip");
      state.epoch_loss_sum += loss_value;
      ++state.epoch_batches;
      if (step_ends) {
        micro = 0;
        if (c.optim.grad_clip > 0) grads->clip_gradients(optimizer->params(), c.optim.grad_clip);
        optimizer->set_lr(schedule->lr_at(state.step));
        optimizer->step();
        optimizer->zero_grad();
        grads->after_update();
        ++state.step;
        if (tb) tb->add_scalar("train/loss", loss_value, state.step);
        if (c.train.checkpoint_every > 0 && state.step % c.train.checkpoint_every == 0 && !last_in_epoch) save();
        if (c.train.max_steps > 0 && state.step >= c.train.max_steps) stop = true;
      } else {
        ++micro;
      }
      progress.update(index, loss_value, task.is_text ? whole * c.data.context : whole);
      if (stop) break;
    }
    progress.end_epoch();
    double rate = progress.epoch_rate();
    double train_loss = state.epoch_batches > 0 ? state.epoch_loss_sum / static_cast<double>(state.epoch_batches) : 0;
    grads->gather_model();
    EvalResult ev = evaluate(*model, task.test, c.data.batch_size, c.train.eval_batches);
    nlohmann::json line = {{"epoch", epoch + 1},        {"step", state.step},         {"train_loss", train_loss},
                           {"test_loss", ev.loss},      {"test_accuracy", ev.accuracy},
                           {task.is_text ? "tokens_per_s" : "images_per_s", rate},
                           {"lr", optimizer->lr()},     {"seconds", progress.epoch_seconds()}};
    const StepTotals& totals = grads->totals();
    if (comm.size() > 1 && totals.allreduce_seconds > 0)
      line["allreduce_hidden_fraction"] = 1.0 - totals.allreduce_exposed_seconds / totals.allreduce_seconds;
    if (c.dist.strategy == "pipeline" && totals.steps > 0)
      line["pipeline_bubble_stage0"] = totals.bubble_sum / static_cast<double>(totals.steps);
    if (metrics) metrics->append(line.dump());
    if (tb) {
      tb->add_scalar("test/loss", ev.loss, state.step);
      tb->add_scalar("test/accuracy", ev.accuracy, state.step);
    }
    progress.message(detail::concat("epoch ", epoch + 1, ": train_loss ", train_loss, " test_loss ", ev.loss,
                                    " test_accuracy ", ev.accuracy, " ", static_cast<int64_t>(rate), " ",
                                    task.sample_unit, "/s"));
    if (root && task.is_text && c.sample.tokens > 0) progress.message("sample: " + sample_text(*model, task, c));
    state.epoch_loss_sum = 0.0;
    state.epoch_batches = 0;
    save();
    ran_epoch = true;
    summary.train_loss = train_loss;
    summary.test_loss = ev.loss;
    summary.test_accuracy = ev.accuracy;
    summary.rate = rate;
  }
  if (!ran_epoch) {  // resumed a finished run: report the checkpoint's test figures
    EvalResult ev = evaluate(*model, task.test, c.data.batch_size, c.train.eval_batches);
    summary.test_loss = ev.loss;
    summary.test_accuracy = ev.accuracy;
  }
  // Epochs run, counting one stopped part-way by max_steps.
  summary.epochs = loader.state().epoch + (loader.state().batch > 0 ? 1 : 0);
  summary.steps = state.step;
  summary.allreduce_seconds = grads->totals().allreduce_seconds;
  summary.allreduce_exposed_seconds = grads->totals().allreduce_exposed_seconds;
  summary.bytes_sent = comm.stats().bytes_sent - bytes_at_start;
  for (auto& [name, t] : optimizer->state_dict())
    summary.optimizer_state_bytes += t.numel() * static_cast<int64_t>(element_size(t.dtype()));
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  return summary;
}

}  // namespace kiln::cli
