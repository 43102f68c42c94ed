#include "kiln/dist/parameter_server.h"

#include <algorithm>
#include <optional>
#include <cstring>
#include <thread>

namespace kiln::dist {

namespace {
constexpr int kPushTag = 100, kReplyTag = 101, kGatherTag = 102;
constexpr int64_t kDone = -1, kBarrier = -3;  // control codes in a push's clock field
int worker_count(const Communicator& comm, const PsOptions& o) { return comm.size() - o.servers; }

std::vector<int64_t> sizes_of(const std::vector<Tensor>& params) {
  std::vector<int64_t> s;
  for (auto& p : params) s.push_back(p.numel());
  return s;
}

std::optional<GradientCodec> codec_of(const PsOptions& o) {
  if (o.compression == "none") return std::nullopt;
  return GradientCodec(o.compression, o.topk_ratio, o.topk_warmup);
}

void check_roles(const Communicator& comm, const PsOptions& o) {
  KILN_CHECK(o.servers >= 1 && o.servers < comm.size(), "ps: ", o.servers, " server(s) need at least one more rank "
             "for a worker, but the world has ", comm.size(), "\nhelp: start at least ", o.servers + 1,
             " ranks, or lower dist.servers");
  KILN_CHECK(o.mode == "bsp" || o.mode == "asp" || o.mode == "ssp", "ps: dist.ps_mode must be bsp, asp or ssp, got '",
             o.mode, "'");
  KILN_CHECK(o.staleness >= 0, "ps: dist.staleness must be >= 0, got ", o.staleness);
}
}  // namespace

int64_t push_bytes(const PsOptions& options, int64_t n, int64_t exchange) {
  auto codec = codec_of(options);
  return 8 + (codec ? codec->encoded_bytes(n, exchange) : 4 * n);
}

PsLayout::PsLayout(const std::vector<int64_t>& param_sizes, int servers) : sizes_(param_sizes), servers_(servers) {
  offsets_.assign(static_cast<size_t>(servers), std::vector<int64_t>(sizes_.size(), 0));
  totals_.assign(static_cast<size_t>(servers), 0);
  for (int s = 0; s < servers; ++s)
    for (size_t p = 0; p < sizes_.size(); ++p) {
      offsets_[static_cast<size_t>(s)][p] = totals_[static_cast<size_t>(s)];
      totals_[static_cast<size_t>(s)] += shard_hi(static_cast<int64_t>(p), s) - shard_lo(static_cast<int64_t>(p), s);
    }
}

ParameterServer::ParameterServer(Communicator& comm, const std::vector<Tensor>& initial_params, PsOptions options,
                                 const OptimizerFactory& make_optimizer)
    : comm_(comm), options_(std::move(options)), layout_(sizes_of(initial_params), options_.servers) {
  check_roles(comm, options_);
  const int s = comm.rank();
  KILN_ASSERT(s < options_.servers, "rank ", s, " is not a server");
  values_ = Tensor::empty({layout_.server_size(s)});
  for (int64_t p = 0; p < layout_.params(); ++p) {
    const int64_t lo = layout_.shard_lo(p, s), hi = layout_.shard_hi(p, s), at = layout_.offset(p, s);
    Tensor src = contiguous_raw(initial_params[static_cast<size_t>(p)]);
    std::memcpy(values_.data<float>() + at, src.data<float>() + lo, static_cast<size_t>(hi - lo) * sizeof(float));
    Tensor key = values_.as_strided({hi - lo}, {1}, at);  // the store's entry for (p, s)
    key.set_requires_grad(true);
    keys_.push_back(key);
  }
  optimizer_ = make_optimizer(keys_);
}

void ParameterServer::apply(const float* grad, double scale) {
  for (int64_t p = 0; p < layout_.params(); ++p) {
    Tensor& key = keys_[static_cast<size_t>(p)];
    Tensor g = Tensor::empty(key.shape());
    const float* src = grad + layout_.offset(p, comm_.rank());
    float* dst = g.data<float>();
    for (int64_t i = 0; i < key.numel(); ++i) dst[i] = static_cast<float>(src[i] * scale);
    key.set_grad(g);
  }
  optimizer_->step();
  optimizer_->zero_grad();
  ++version_;
}

void ParameterServer::run(const SnapshotFn& on_snapshot) {
  const int W = worker_count(comm_, options_), S = options_.servers;
  const int64_t n = layout_.server_size(comm_.rank());
  std::vector<Tensor> inbox, outbox;
  std::vector<WorkHandle> pushes(static_cast<size_t>(W)), replies(static_cast<size_t>(W));
  std::vector<int64_t> received(static_cast<size_t>(W), 0);  // pushes from each worker so far
  std::vector<int64_t> clock(static_cast<size_t>(W), 0), base(static_cast<size_t>(W), 0);
  const auto codec = codec_of(options_);
  std::vector<float> dense(static_cast<size_t>(n));
  // The clock of worker w's latest push and its gradient, decoded into `dense`.
  auto clock_of = [&](int w) {
    int64_t c = 0;
    std::memcpy(&c, inbox[static_cast<size_t>(w)].data<uint8_t>(), sizeof c);
    return c;
  };
  // A barrier's payload: the worker's clock, then its position.
  auto barrier_value = [&](int w, int k) {
    int64_t v = 0;
    std::memcpy(&v, inbox[static_cast<size_t>(w)].data<uint8_t>() + 8 + 8 * k, sizeof v);
    return v;
  };
  std::vector<bool> at_barrier(static_cast<size_t>(W), false);
  std::vector<int64_t> positions(static_cast<size_t>(W), 0);
  // Every active worker is at the barrier: snapshot, then answer them all.
  auto take_snapshot = [&] {
    PsSnapshot snap{version_, clock, positions};
    if (on_snapshot) on_snapshot(*this, snap);
  };
  auto decode = [&](int w) -> const float* {
    const uint8_t* payload = inbox[static_cast<size_t>(w)].data<uint8_t>() + 8;
    if (!codec) {
      std::memcpy(dense.data(), payload, static_cast<size_t>(n) * sizeof(float));
    } else {
      std::fill(dense.begin(), dense.end(), 0.f);
      codec->decode_add(payload, n, dense.data(), received[static_cast<size_t>(w)] - 1);
    }
    return dense.data();
  };
  std::vector<bool> active(static_cast<size_t>(W), true), waiting(static_cast<size_t>(W), false);
  for (int w = 0; w < W; ++w) {
    inbox.emplace_back();
    outbox.push_back(Tensor::empty({1 + n}));
  }
  auto listen = [&](int w) {
    Tensor& box = inbox[static_cast<size_t>(w)];
    const int64_t bytes = push_bytes(options_, n, received[static_cast<size_t>(w)]++);
    if (!box.defined() || box.numel() != bytes) box = Tensor::empty({bytes}, DType::u8);
    pushes[static_cast<size_t>(w)] = comm_.recv(box, S + w, kPushTag);
  };
  auto answer = [&](int w) {
    auto& r = replies[static_cast<size_t>(w)];
    if (r) r->wait();  // the previous answer must have left before its buffer is refilled
    float* out = outbox[static_cast<size_t>(w)].data<float>();
    out[0] = static_cast<float>(version_);
    std::memcpy(out + 1, values_.data<float>(), static_cast<size_t>(n) * sizeof(float));
    r = comm_.send(outbox[static_cast<size_t>(w)], S + w, kReplyTag);
    base[static_cast<size_t>(w)] = version_;
    waiting[static_cast<size_t>(w)] = false;
    listen(w);
  };
  for (int w = 0; w < W; ++w) listen(w);

  if (options_.mode == "bsp") {
    std::vector<float> mean(static_cast<size_t>(n));
    for (;;) {
      int done = 0, barriers = 0;
      for (int w = 0; w < W; ++w) {
        pushes[static_cast<size_t>(w)]->wait();
        done += clock_of(w) == kDone;
        barriers += clock_of(w) == kBarrier;
      }
      if (done == W) break;
      KILN_CHECK(done == 0 && (barriers == 0 || barriers == W), "ps (bsp): in one clock ", done, " of ", W,
                 " workers finished and ", barriers, " reached a checkpoint while others sent gradients: the "
                 "workers ran different numbers of steps");
      if (barriers == W) {
        for (int w = 0; w < W; ++w) {
          clock[static_cast<size_t>(w)] = barrier_value(w, 0);
          positions[static_cast<size_t>(w)] = barrier_value(w, 1);
        }
        take_snapshot();
        for (int w = 0; w < W; ++w) answer(w);
        continue;
      }
      // The mean of the workers' gradients, summed in worker order (the same bits every run).
      std::fill(mean.begin(), mean.end(), 0.f);
      for (int w = 0; w < W; ++w) {
        const float* g = decode(w);
        for (int64_t i = 0; i < n; ++i) mean[static_cast<size_t>(i)] += g[i];
      }
      histogram_[0] += W;
      apply(mean.data(), 1.0 / W);
      for (int w = 0; w < W; ++w) answer(w);
    }
  } else {
    const int64_t bound = options_.mode == "asp" ? -1 : options_.staleness;
    auto nap = std::chrono::microseconds(5);
    for (;;) {
      bool progressed = false;
      for (int w = 0; w < W; ++w) {
        if (!active[static_cast<size_t>(w)] || waiting[static_cast<size_t>(w)] || at_barrier[static_cast<size_t>(w)] ||
            !pushes[static_cast<size_t>(w)]->done())
          continue;
        pushes[static_cast<size_t>(w)]->wait();  // rethrows a failed receive
        progressed = true;
        const int64_t c = clock_of(w);
        if (c == kDone) {
          active[static_cast<size_t>(w)] = false;
          continue;
        }
        if (c == kBarrier) {
          at_barrier[static_cast<size_t>(w)] = true;
          clock[static_cast<size_t>(w)] = barrier_value(w, 0);
          positions[static_cast<size_t>(w)] = barrier_value(w, 1);
          continue;
        }
        ++histogram_[version_ - base[static_cast<size_t>(w)]];
        apply(decode(w), 1.0);
        clock[static_cast<size_t>(w)] = c;
        waiting[static_cast<size_t>(w)] = true;
      }
      // Answer every waiting worker within the staleness bound of the slowest active one.
      int64_t slowest = INT64_MAX;
      bool any_active = false;
      for (int w = 0; w < W; ++w)
        if (active[static_cast<size_t>(w)]) {
          slowest = std::min(slowest, clock[static_cast<size_t>(w)]);
          any_active = true;
        }
      for (int w = 0; w < W; ++w)
        if (waiting[static_cast<size_t>(w)] && (bound < 0 || clock[static_cast<size_t>(w)] - bound <= slowest)) {
          if (any_active) max_lead_ = std::max(max_lead_, clock[static_cast<size_t>(w)] - slowest);
          answer(w);
          progressed = true;
        }
      // A checkpoint once every active worker waits at the barrier (each arrives at the same
      // clock; the ones ahead wait for the rest there).
      bool all_at_barrier = any_active;
      for (int w = 0; w < W; ++w)
        if (active[static_cast<size_t>(w)] && !at_barrier[static_cast<size_t>(w)]) all_at_barrier = false;
      if (all_at_barrier) {
        take_snapshot();
        for (int w = 0; w < W; ++w)
          if (at_barrier[static_cast<size_t>(w)]) {
            at_barrier[static_cast<size_t>(w)] = false;
            answer(w);
          }
        progressed = true;
      }
      if (!any_active) break;
      if (progressed) {
        nap = std::chrono::microseconds(5);
      } else {
        std::this_thread::sleep_for(nap);
        if (nap < std::chrono::microseconds(200)) nap *= 2;
      }
    }
  }
  for (auto& r : replies)
    if (r) r->wait();
}

PsWorker::PsWorker(Communicator& comm, std::vector<Tensor> params, PsOptions options)
    : comm_(comm), params_(std::move(params)), options_(std::move(options)), layout_(sizes_of(params_), options_.servers) {
  check_roles(comm, options_);
}

void PsWorker::push_pull(int64_t clock) {
  const auto codec = codec_of(options_);
  if (codec && residuals_.empty()) residuals_.resize(static_cast<size_t>(options_.servers));
  std::vector<Tensor> out, in;
  std::vector<WorkHandle> works;
  std::vector<float> shard;
  for (int s = 0; s < options_.servers; ++s) {
    const int64_t n = layout_.server_size(s);
    // This server's shards of every gradient, flat, in its store's layout.
    shard.assign(static_cast<size_t>(n), 0.f);
    for (int64_t p = 0; p < layout_.params(); ++p) {
      Tensor g = params_[static_cast<size_t>(p)].grad();
      if (!g.defined()) continue;
      g = contiguous_raw(g);
      const int64_t lo = layout_.shard_lo(p, s), hi = layout_.shard_hi(p, s);
      std::memcpy(shard.data() + layout_.offset(p, s), g.data<float>() + lo, static_cast<size_t>(hi - lo) * sizeof(float));
    }
    Tensor msg = Tensor::empty({push_bytes(options_, n, pushes_)}, DType::u8);
    std::memcpy(msg.data<uint8_t>(), &clock, sizeof clock);
    if (codec)
      codec->encode(shard.data(), n, residuals_[static_cast<size_t>(s)], msg.data<uint8_t>() + 8, pushes_);
    else
      std::memcpy(msg.data<uint8_t>() + 8, shard.data(), static_cast<size_t>(n) * sizeof(float));
    out.push_back(msg);
    in.push_back(Tensor::empty({1 + n}));
    works.push_back(comm_.send(msg, s, kPushTag));
    works.push_back(comm_.recv(in.back(), s, kReplyTag));
  }
  ++pushes_;
  for (auto& w : works) w->wait();
  install(in);
}

void PsWorker::install(const std::vector<Tensor>& in) {
  for (int s = 0; s < options_.servers; ++s) {
    const float* m = in[static_cast<size_t>(s)].data<float>() + 1;
    for (int64_t p = 0; p < layout_.params(); ++p) {
      const int64_t lo = layout_.shard_lo(p, s), hi = layout_.shard_hi(p, s);
      Tensor& t = params_[static_cast<size_t>(p)];
      std::memcpy(t.data<float>() + lo, m + layout_.offset(p, s), static_cast<size_t>(hi - lo) * sizeof(float));
      t.bump_version();
    }
  }
}

void PsWorker::checkpoint_barrier(int64_t clock, int64_t position) {
  std::vector<Tensor> out, in;
  std::vector<WorkHandle> works;
  for (int s = 0; s < options_.servers; ++s) {
    const int64_t n = layout_.server_size(s);
    out.push_back(Tensor::zeros({push_bytes(options_, n, pushes_)}, DType::u8));
    uint8_t* m = out.back().data<uint8_t>();
    KILN_CHECK(out.back().numel() >= 24, "ps: checkpoints need messages of at least 24 bytes\nhelp: raise "
               "dist.topk_ratio");
    std::memcpy(m, &kBarrier, sizeof kBarrier);
    std::memcpy(m + 8, &clock, sizeof clock);
    std::memcpy(m + 16, &position, sizeof position);
    in.push_back(Tensor::empty({1 + n}));
    works.push_back(comm_.send(out.back(), s, kPushTag));
    works.push_back(comm_.recv(in.back(), s, kReplyTag));
  }
  ++pushes_;
  for (auto& w : works) w->wait();
  install(in);
}

void PsWorker::finish() {
  std::vector<Tensor> out;
  std::vector<WorkHandle> works;
  for (int s = 0; s < options_.servers; ++s) {
    out.push_back(Tensor::zeros({push_bytes(options_, layout_.server_size(s), pushes_)}, DType::u8));
    std::memcpy(out.back().data<uint8_t>(), &kDone, sizeof kDone);
    works.push_back(comm_.send(out.back(), s, kPushTag));
  }
  for (auto& w : works) w->wait();
}

void gather_to_first_server(Communicator& comm, const ParameterServer& server, const std::vector<Tensor>& params) {
  const PsLayout& layout = server.layout();
  const int me = comm.rank();
  auto install = [&](int s, const float* values) {
    for (int64_t p = 0; p < layout.params(); ++p) {
      const int64_t lo = layout.shard_lo(p, s), hi = layout.shard_hi(p, s);
      const Tensor& t = params[static_cast<size_t>(p)];
      std::memcpy(t.data<float>() + lo, values + layout.offset(p, s), static_cast<size_t>(hi - lo) * sizeof(float));
      t.bump_version();
    }
  };
  if (me != 0) {
    comm.send(server.buffer(), 0, kGatherTag)->wait();
    return;
  }
  install(0, server.buffer().data<float>());
  for (int s = 1; s < layout.servers(); ++s) {
    Tensor theirs = Tensor::empty({layout.server_size(s)});
    comm.recv(theirs, s, kGatherTag)->wait();
    install(s, theirs.data<float>());
  }
}

}  // namespace kiln::dist
