// kiln train with dist.strategy = "ps": ranks 0 .. servers-1 serve the parameters
// (dist/parameter_server.h), the others train on their shard of every batch and push gradients.
// Rank 0 (a server) evaluates and saves the model at the end.
#include <chrono>
#include <filesystem>
#include <sstream>
#include <nlohmann/json.hpp>

#include "kiln/autograd/engine.h"
#include "kiln/cli/evaluate.h"
#include "kiln/cli/progress.h"
#include "kiln/cli/rank_state.h"
#include "kiln/cli/task.h"
#include "kiln/cli/trainer.h"
#include "kiln/core/rng.h"
#include "kiln/core/thread_pool.h"
#include "kiln/data/data_loader.h"
#include "kiln/dist/consistency.h"
#include "kiln/dist/parameter_server.h"
#include "kiln/io/atomic_file.h"
#include "kiln/io/checkpoint.h"
#include "kiln/io/metrics_log.h"

namespace kiln::cli {

namespace {
constexpr const char* kWorkerPositions = "extra.ps_worker_positions";  // "clock:position,..." per worker
}  // namespace

TrainSummary train_ps(const TrainConfig& c, const TrainOptions& opt, dist::Communicator& comm) {
  auto wall_start = std::chrono::steady_clock::now();
  const dist::PsOptions po{static_cast<int>(c.dist.servers), c.dist.ps_mode,     c.dist.staleness,
                           c.dist.compression,                c.dist.topk_ratio, c.dist.topk_warmup_steps};
  dist::check_all(comm, po.servers >= 1 && po.servers < comm.size(),
                  detail::concat("ps: ", po.servers, " server(s) need at least one more rank for a worker, but ",
                                 comm.size(), " ranks were started\nhelp: start at least ", po.servers + 1,
                                 " ranks (for example kiln launch -n 3 for 1 server and 2 workers)"));
  const bool server = comm.rank() < po.servers;
  const int workers = comm.size() - po.servers, worker = comm.rank() - po.servers;
  set_num_threads(static_cast<int>(c.threads));
  manual_seed(c.seed);
  std::filesystem::create_directories(opt.out_dir);

  Task task = make_task(c);
  nn::ModulePtr model = nn::make_model(task.spec, c.seed);  // the same initial weights everywhere
  TrainSummary summary = start_summary(c, task, opt.out_dir, comm.size());
  const int64_t bytes_at_start = comm.stats().bytes_sent;

  // Resuming from a checkpoint barrier: the store as it was (gathered into the model), each
  // server's optimiser state from its own file, each worker's clock and loader position.
  int64_t resume_version = 0;
  std::vector<std::pair<int64_t, int64_t>> resume_workers;  // (clock, loader position) per worker
  if (opt.resume) {
    const std::string ckpt = checkpoint_path(opt.out_dir);
    dist::check_all(comm, std::filesystem::exists(ckpt), detail::concat("--resume: no checkpoint at ", ckpt));
    io::Checkpoint saved = io::load_checkpoint(ckpt);
    auto ranks = saved.state.extra.find(kPerRankOptimizer);
    auto positions = saved.state.extra.find(kWorkerPositions);
    dist::check_all(comm, ranks != saved.state.extra.end() && positions != saved.state.extra.end() &&
                              ranks->second == std::to_string(comm.size()),
                    detail::concat("--resume: ", ckpt, " is not a checkpoint of a parameter-server run with ",
                                   comm.size(), " ranks"));
    model->load_state_dict(saved.model);
    resume_version = saved.state.step;
    std::istringstream in(positions->second);
    for (std::string item; std::getline(in, item, ',');) {
      const size_t colon = item.find(':');
      auto number = [&](const std::string& text) {
        KILN_CHECK_AS(IoError, !text.empty() && text.find_first_not_of("0123456789") == std::string::npos,
                      "--resume: ", ckpt, " has a malformed worker position '", item, "'");
        return std::stoll(text);
      };
      KILN_CHECK_AS(IoError, colon != std::string::npos, "--resume: ", ckpt, " has a malformed worker position '",
                    item, "'");
      resume_workers.emplace_back(number(item.substr(0, colon)), number(item.substr(colon + 1)));
    }
    KILN_CHECK(static_cast<int>(resume_workers.size()) == workers, "--resume: the checkpoint has ",
               resume_workers.size(), " workers' positions, this run ", workers);
  }

  if (server) {
    std::fprintf(stderr, "%sps: server %d of %d (%s%s), %d workers\n", dist::log_prefix().c_str(), comm.rank(),
                 po.servers, po.mode.c_str(), po.mode == "ssp" ? (" s=" + std::to_string(po.staleness)).c_str() : "",
                 workers);
    dist::ParameterServer ps(comm, model->parameters(), po,
                             [&](std::vector<Tensor> keys) { return make_optimizer(c, std::move(keys)); });
    if (opt.resume) {
      ps.optimizer().load_state_dict(load_rank_optimizer(opt.out_dir, resume_version, comm.rank()));
      ps.set_version(resume_version);
    }
    int64_t previous_snapshot = -1;
    ps.run([&](const dist::ParameterServer& server, const dist::PsSnapshot& snap) {
      // Each server's optimiser state in its own file, then the store gathered on rank 0, which
      // writes the checkpoint naming this version. A server's file of the snapshot before the
      // previous one is no longer named by any checkpoint and goes.
      save_rank_optimizer(opt.out_dir, snap.version, comm.rank(), server.optimizer());
      dist::gather_to_first_server(comm, server, model->parameters());
      if (comm.rank() == 0) {
        io::TrainingState state;
        state.config_toml = to_toml(c);
        state.model_name = c.model.name;
        state.extra = task.extra;
        state.step = snap.version;
        state.extra[kPerRankOptimizer] = std::to_string(comm.size());
        std::string list;
        for (size_t w = 0; w < snap.clocks.size(); ++w) {
          if (w) list += ',';
          list += std::to_string(snap.clocks[w]);
          list += ':';
          list += std::to_string(snap.positions[w]);
        }
        state.extra[kWorkerPositions] = list;
        io::save_checkpoint(summary.checkpoint, *model, nullptr, state);
      }
      if (previous_snapshot >= 0) remove_old_rank_optimizers(opt.out_dir, previous_snapshot, comm.rank(), snap.version);
      previous_snapshot = snap.version;
    });
    dist::gather_to_first_server(comm, ps, model->parameters());
    summary.steps = ps.updates();
    if (comm.rank() == 0) {
      EvalResult ev = evaluate(*model, task.test, c.data.batch_size, c.train.eval_batches);
      nlohmann::json hist = nlohmann::json::object();
      int64_t pushes = 0, weighted = 0;
      for (auto [staleness, count] : ps.staleness_histogram()) {
        hist[std::to_string(staleness)] = count;
        pushes += count;
        weighted += staleness * count;
      }
      io::write_file_atomic(opt.out_dir + "/config.toml", to_toml(c));
      io::MetricsLog metrics(opt.out_dir + "/metrics.jsonl", false);
      metrics.append(nlohmann::json{{"updates", ps.updates()},
                                    {"test_loss", ev.loss},
                                    {"test_accuracy", ev.accuracy},
                                    {"staleness_histogram", hist},
                                    {"mean_staleness", pushes ? double(weighted) / double(pushes) : 0.0}}
                         .dump());
      std::fprintf(stderr, "ps: %lld updates, staleness histogram %s (mean %.2f); test_accuracy %g\n",
                   static_cast<long long>(ps.updates()), hist.dump().c_str(),
                   pushes ? double(weighted) / double(pushes) : 0.0, ev.accuracy);
      summary.test_accuracy = ev.accuracy;
      summary.test_loss = ev.loss;
      summary.staleness_mean = pushes ? double(weighted) / double(pushes) : 0.0;
    }
  } else {
    // A worker: its shard of every global batch, gradients to the servers, parameters back.
    data::LoaderOptions lo = loader_options(c);
    lo.shard_count = workers;
    lo.shards = {worker};
    data::DataLoader loader(task.train, lo);
    dist::PsWorker ps(comm, model->parameters(), po);
    model->train();
    int64_t clock = 0;
    // A loader position as one int64 for the snapshot: epoch in the high half, batch in the low.
    auto position = [&] { return loader.state().epoch << 32 | loader.state().batch; };
    if (opt.resume) {
      const auto [saved_clock, saved_position] = resume_workers[static_cast<size_t>(worker)];
      clock = saved_clock;
      loader.set_state({saved_position >> 32, saved_position & 0xffffffff});
    }
    const int64_t every = c.train.checkpoint_every;
    double loss_sum = 0;
    bool stop = false;
    while (loader.state().epoch < c.train.epochs && !stop)
      while (auto batch = loader.next()) {
        if (batch->indices.empty()) continue;
        Tensor loss = task_loss(model->forward(batch->input), batch->target);
        const double value = loss.item();
        KILN_CHECK(std::isfinite(value), "ps: loss became ", value, " on worker ", worker, "\nhelp: lower optim.lr");
        autograd::backward(loss);
        ps.push_pull(++clock);
        for (auto& p : model->parameters()) p.set_grad(Tensor());
        loss_sum += value;
        if (c.train.max_steps > 0 && clock >= c.train.max_steps) {
          stop = true;
          break;
        }
        if (every > 0 && clock % every == 0) ps.checkpoint_barrier(clock, position());
      }
    ps.checkpoint_barrier(clock, position());  // the end is a resumable checkpoint too
    ps.finish();
    summary.steps = clock;
    summary.train_loss = clock ? loss_sum / double(clock) : 0.0;
  }
  summary.epochs = c.train.epochs;
  summary.bytes_sent = comm.stats().bytes_sent - bytes_at_start;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  return summary;
}

}  // namespace kiln::cli
