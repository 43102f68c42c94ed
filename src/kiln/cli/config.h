// The training configuration: a TOML file plus `--set key=value` overrides, validated against a
// schema of known keys. An unknown key or a wrong type is an error naming the key and what was
// expected; every key has a default, so a config only states what differs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::cli {

struct TrainConfig {
  uint64_t seed = 42;
  int64_t threads = 2;

  struct Model {
    std::string name = "mlp";
    double dropout = 0.0;
  } model;

  struct Data {
    std::string dataset = "fashion-mnist";  // fashion-mnist | text
    std::string path;                       // default: the dataset's standard location
    int64_t batch_size = 128;
    bool shuffle = true;
    bool drop_last = false;
    int64_t workers = 1;
    bool augment = false;     // random crop (pad 4) + horizontal flip, images only
    int64_t context = 128;    // text: tokens per example
    double val_fraction = 0.05;  // text: tail of the corpus held out for test loss
  } data;

  struct Optim {
    std::string name = "adam";  // sgd | adam | adamw
    double lr = 1e-3;
    double momentum = 0.0;
    bool nesterov = false;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;
    double grad_clip = 0.0;  // max global grad norm; 0 disables
    int64_t grad_accum = 1;  // micro-batches per optimiser step
  } optim;

  struct Schedule {
    std::string name = "constant";  // constant | step | cosine
    int64_t warmup_steps = 0;
    int64_t step_size = 1000;
    double gamma = 0.1;
    double min_lr = 0.0;
  } schedule;

  struct Train {
    int64_t epochs = 1;
    int64_t max_steps = 0;         // stop after this many optimiser steps (0: no limit)
    int64_t log_every = 50;        // plain-progress line period, in steps
    int64_t checkpoint_every = 0;  // steps between checkpoints (0: once per epoch)
    int64_t eval_batches = 0;      // cap on test batches per evaluation (0: whole test set)
  } train;

  // Distributed training (docs/notes/distributed.md). Under mpirun every rank reads the same
  // config; the ranks check at start that they agree.
  struct Dist {
    std::string strategy = "none";  // none | ddp | ps | pipeline | tensor | fedavg
    int64_t shards = 0;             // ddp: data shards per global batch (0: the world size)
    double bucket_mb = 0.25;        // ddp: gradient megabytes per allreduce bucket
    bool overlap = true;            // ddp: reduce buckets while backward runs (false: after it)
    std::string compression = "none";  // ddp: none | topk | int8 (with error feedback)
    double topk_ratio = 0.01;          // ddp topk: fraction of each bucket's values sent
    bool zero = false;                 // ddp: ZeRO stage 1, optimiser state sharded over the ranks
    int64_t topk_warmup_steps = 0;     // ddp topk: density falls from 25% to topk_ratio over these steps
    double timeout_s = 300.0;       // a collective waiting longer than this ends the job
    int64_t micro_batches = 4;       // pipeline: micro-batches per batch
    std::string schedule = "1f1b";   // pipeline: gpipe | 1f1b
    std::string split;               // pipeline: first layer of stages 1.., e.g. "3,6" ("": balanced by cost)
    int64_t servers = 1;             // ps: server ranks (the rest are workers)
    std::string ps_mode = "bsp";     // ps: bsp | asp | ssp
    int64_t staleness = 2;           // ps ssp: how many clocks a worker may run ahead of the slowest
    int64_t rounds = 20;             // fedavg: averaging rounds
    int64_t local_epochs = 1;        // fedavg: epochs over the client's data per round
    std::string partition = "iid";   // fedavg: iid | noniid (each client mostly two classes)
    double noniid_fraction = 0.8;    // fedavg noniid: share of a client's data from its two classes
    bool timeline = false;          // ddp: each rank writes ddp_timeline.rank<R>.csv (step timings)
  } dist;

  struct Sample {
    int64_t tokens = 300;  // text models: characters sampled after each epoch (0: none)
    double temperature = 0.8;
    int64_t top_k = 0;
    std::string prompt = "And God said";
  } sample;
};

// Parses TOML text (`origin` names it in errors) and applies overrides "a.b=value".
TrainConfig parse_config(const std::string& toml_text, const std::string& origin,
                         const std::vector<std::string>& overrides = {});
TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The resolved configuration as TOML (saved beside checkpoints; parse_config reads it back).
std::string to_toml(const TrainConfig& config);

}  // namespace kiln::cli
