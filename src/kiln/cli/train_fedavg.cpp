// kiln train with dist.strategy = "fedavg": each rank is a client training on its own share
// of the data (dist/federated.h); models are averaged after every round of local epochs.
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "kiln/autograd/engine.h"
#include "kiln/cli/evaluate.h"
#include "kiln/cli/progress.h"
#include "kiln/cli/task.h"
#include "kiln/cli/trainer.h"
#include "kiln/core/rng.h"
#include "kiln/core/thread_pool.h"
#include "kiln/data/data_loader.h"
#include "kiln/data/subset.h"
#include "kiln/dist/consistency.h"
#include "kiln/dist/federated.h"
#include "kiln/io/atomic_file.h"
#include "kiln/io/checkpoint.h"
#include "kiln/io/metrics_log.h"
#include "kiln/optim/optimizer.h"

namespace kiln::cli {

namespace {
constexpr const char* kRoundsDone = "extra.fedavg_rounds_done";  // checkpoint metadata

std::vector<int64_t> labels_of(const data::Dataset& d, bool is_text) {
  std::vector<int64_t> labels(static_cast<size_t>(d.size()), 0);
  if (is_text) return labels;  // no classes: only the iid split applies
  for (int64_t i = 0; i < d.size(); ++i) labels[static_cast<size_t>(i)] = static_cast<int64_t>(d.get(i).target.item());
  return labels;
}
}  // namespace

TrainSummary train_fedavg(const TrainConfig& c, const TrainOptions& opt, dist::Communicator& comm) {
  auto wall_start = std::chrono::steady_clock::now();
  const bool root = comm.rank() == 0;
  set_num_threads(static_cast<int>(c.threads));
  manual_seed(c.seed);
  std::filesystem::create_directories(opt.out_dir);

  Task task = make_task(c);
  KILN_CHECK(!(task.is_text && c.dist.partition == "noniid"), "fedavg: a non-IID split needs classes; the text task "
             "has none\nhelp: --set dist.partition=iid");
  nn::ModulePtr model = nn::make_model(task.spec, c.seed);
  // Resuming: the averaged model of the last finished round; every round starts with a fresh
  // optimiser and each client's data order is a function of (seed, rank, epoch), so nothing else
  // is needed to continue exactly.
  int64_t first_round = 0, steps_done = 0;
  if (opt.resume) {
    const std::string ckpt = checkpoint_path(opt.out_dir);
    dist::check_all(comm, std::filesystem::exists(ckpt), detail::concat("--resume: no checkpoint at ", ckpt));
    io::Checkpoint saved = io::load_checkpoint(ckpt);
    auto rounds = saved.state.extra.find(kRoundsDone);
    KILN_CHECK(rounds != saved.state.extra.end(), "--resume: ", ckpt, " was not written by a fedavg run");
    model->load_state_dict(saved.model);
    KILN_CHECK_AS(IoError, !rounds->second.empty() && rounds->second.find_first_not_of("0123456789") == std::string::npos,
                  "--resume: ", ckpt, " has a malformed round count '", rounds->second, "'");
    first_round = std::stoll(rounds->second);
    steps_done = saved.state.step;
  }
  auto optimizer = make_optimizer(c, model->parameters());
  std::vector<Tensor> shared = model->parameters();
  for (auto& [name, b] : model->named_buffers()) shared.push_back(b);
  for (auto& t : shared) comm.broadcast(t, 0)->wait();

  auto parts = dist::partition_clients(labels_of(*task.train, task.is_text), comm.size(), c.dist.partition,
                                       c.dist.noniid_fraction, c.seed);
  const auto& mine = parts[static_cast<size_t>(comm.rank())];
  KILN_CHECK(!mine.empty(), "fedavg: client ", comm.rank(), " got no examples");
  data::LoaderOptions lo = loader_options(c);
  lo.seed = c.seed + static_cast<uint64_t>(comm.rank());
  data::DataLoader loader(std::make_shared<data::SubsetDataset>(task.train, mine), lo);
  loader.set_state({first_round * c.dist.local_epochs, 0});
  std::fprintf(stderr, "%sfedavg: client %d holds %zu examples (%s split)\n", dist::log_prefix().c_str(), comm.rank(),
               mine.size(), c.dist.partition.c_str());

  std::optional<io::MetricsLog> metrics;
  if (root) {
    io::write_file_atomic(opt.out_dir + "/config.toml", to_toml(c));
    metrics.emplace(opt.out_dir + "/metrics.jsonl", /*append=*/opt.resume);
  }
  Progress progress(c.train.log_every, task.sample_unit, root);
  io::TrainingState state;
  state.config_toml = to_toml(c);
  state.model_name = c.model.name;
  state.extra = task.extra;
  state.step = steps_done;

  TrainSummary summary = start_summary(c, task, opt.out_dir, comm.size());
  const int64_t bytes_at_start = comm.stats().bytes_sent;
  for (int64_t round = first_round; round < c.dist.rounds; ++round) {
    model->train();
    // Every round starts from the averaged model with a fresh optimiser: moments a client built on
    // its own data would pull the next round toward that client (McMahan et al. reset nothing
    // because they use plain SGD; with Adam a reset is the faithful equivalent).
    optimizer = make_optimizer(c, model->parameters());
    double loss_sum = 0;
    int64_t batches = 0;
    auto round_start = std::chrono::steady_clock::now();
    for (int64_t e = 0; e < c.dist.local_epochs; ++e)
      while (auto batch = loader.next()) {
        Tensor loss = task_loss(model->forward(batch->input), batch->target);
        const double value = loss.item();
        KILN_CHECK(std::isfinite(value), "fedavg: loss became ", value, " in round ", round + 1,
                   "\nhelp: lower optim.lr");
        autograd::backward(loss);
        optimizer->step();
        optimizer->zero_grad();
        loss_sum += value;
        ++batches;
        ++state.step;
      }
    dist::weighted_average(comm, shared, static_cast<double>(mine.size()));
    // Only rank 0 evaluates: the others go on with the next round meanwhile.
    EvalResult ev;
    if (root) ev = evaluate(*model, task.test, c.data.batch_size, c.train.eval_batches);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - round_start).count();
    if (metrics)
      metrics->append(nlohmann::json{{"round", round + 1},
                                     {"train_loss_client0", batches ? loss_sum / static_cast<double>(batches) : 0.0},
                                     {"test_loss", ev.loss},
                                     {"test_accuracy", ev.accuracy},
                                     {"seconds", seconds}}
                          .dump());
    progress.message(detail::concat("round ", round + 1, "/", c.dist.rounds, ": test_accuracy ", ev.accuracy,
                                    " test_loss ", ev.loss, " (", seconds, " s)"));
    state.extra[kRoundsDone] = std::to_string(round + 1);
    if (root) io::save_checkpoint(summary.checkpoint, *model, nullptr, state);
    summary.test_accuracy = ev.accuracy;
    summary.test_loss = ev.loss;
    summary.train_loss = batches ? loss_sum / static_cast<double>(batches) : 0.0;
  }
  summary.epochs = c.dist.rounds * c.dist.local_epochs;
  summary.steps = state.step;
  summary.bytes_sent = comm.stats().bytes_sent - bytes_at_start;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  return summary;
}

}  // namespace kiln::cli
