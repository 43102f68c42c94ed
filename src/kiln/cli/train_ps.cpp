// kiln train with dist.strategy = "ps": ranks 0 .. servers-1 serve the parameters
// (dist/parameter_server.h), the others train on their shard of every batch and push gradients.
// Rank 0 (a server) evaluates and saves the model at the end.
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
#include "kiln/dist/consistency.h"
#include "kiln/dist/parameter_server.h"
#include "kiln/io/atomic_file.h"
#include "kiln/io/checkpoint.h"
#include "kiln/io/metrics_log.h"

namespace kiln::cli {

TrainSummary train_ps(const TrainConfig& c, const TrainOptions& opt, dist::Communicator& comm) {
  auto wall_start = std::chrono::steady_clock::now();
  KILN_CHECK(!opt.resume, "ps: --resume is not supported yet\nhelp: start the run again");
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

  if (server) {
    std::fprintf(stderr, "%sps: server %d of %d (%s%s), %d workers\n", dist::log_prefix().c_str(), comm.rank(),
                 po.servers, po.mode.c_str(), po.mode == "ssp" ? (" s=" + std::to_string(po.staleness)).c_str() : "",
                 workers);
    dist::ParameterServer ps(comm, model->parameters(), po,
                             [&](std::vector<Tensor> keys) { return make_optimizer(c, std::move(keys)); });
    ps.run();
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
      io::TrainingState state;
      state.config_toml = to_toml(c);
      state.model_name = c.model.name;
      state.extra = task.extra;
      state.step = ps.updates();
      io::save_checkpoint(summary.checkpoint, *model, nullptr, state);
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
    double loss_sum = 0;
    bool stop = false;
    for (int64_t e = 0; e < c.train.epochs && !stop; ++e)
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
      }
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
