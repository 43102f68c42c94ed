#include "kiln/dist/pipeline.h"

#include <algorithm>
#include <chrono>
#include <deque>

#include "kiln/autograd/engine.h"
#include "kiln/core/allocator.h"
#include "kiln/core/grad_mode.h"
#include "kiln/dist/consistency.h"
#include "kiln/ops/ops.h"

namespace kiln::dist {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

Shape with_rows(int64_t rows, const Shape& example) {
  Shape s = {rows};
  s.insert(s.end(), example.begin(), example.end());
  return s;
}

// Message tags: activations of micro-batch i use i, their gradients kGradTag + i.
constexpr int kGradTag = 1 << 16;
}  // namespace

std::vector<int64_t> balanced_split(const std::vector<double>& costs, int stages) {
  const int n = static_cast<int>(costs.size());
  KILN_CHECK(stages >= 1 && stages <= n, "pipeline: ", stages, " stages for a model of ", n,
             " layers\nhelp: use at most as many ranks as the model has layers");
  // best[k][i]: the smallest possible largest-stage cost splitting layers [0, i) into k stages.
  std::vector<double> prefix(static_cast<size_t>(n) + 1, 0.0);
  for (int i = 0; i < n; ++i) prefix[static_cast<size_t>(i) + 1] = prefix[static_cast<size_t>(i)] + costs[static_cast<size_t>(i)];
  const double inf = 1e300;
  std::vector<std::vector<double>> best(static_cast<size_t>(stages) + 1, std::vector<double>(static_cast<size_t>(n) + 1, inf));
  std::vector<std::vector<int>> cut(best.size(), std::vector<int>(static_cast<size_t>(n) + 1, 0));
  best[0][0] = 0.0;
  for (int k = 1; k <= stages; ++k)
    for (int i = k; i <= n; ++i)
      for (int j = k - 1; j < i; ++j) {
        double c = std::max(best[static_cast<size_t>(k) - 1][static_cast<size_t>(j)], prefix[static_cast<size_t>(i)] - prefix[static_cast<size_t>(j)]);
        if (c < best[static_cast<size_t>(k)][static_cast<size_t>(i)]) {
          best[static_cast<size_t>(k)][static_cast<size_t>(i)] = c;
          cut[static_cast<size_t>(k)][static_cast<size_t>(i)] = j;
        }
      }
  std::vector<int64_t> starts(static_cast<size_t>(stages) - 1);
  int i = n;
  for (int k = stages; k > 1; --k) {
    i = cut[static_cast<size_t>(k)][static_cast<size_t>(i)];
    starts[static_cast<size_t>(k) - 2] = i;
  }
  return starts;
}

Pipeline::Pipeline(Communicator& comm, std::shared_ptr<nn::Sequential> model, const Shape& example_shape,
                   PipelineOptions options)
    : comm_(comm), model_(std::move(model)), options_(std::move(options)) {
  const int p = comm.size();
  const int64_t layers = static_cast<int64_t>(model_->size());
  // Collective checks: every rank reaches them together, so every rank reports the error.
  check_all(comm, p <= layers,
            detail::concat("pipeline: ", p, " stages for a model of ", layers,
                           " layers\nhelp: use at most as many ranks as the model has layers"));
  KILN_CHECK(options_.micro_batches >= 1, "pipeline: dist.micro_batches must be >= 1, got ", options_.micro_batches);
  KILN_CHECK(options_.schedule == "gpipe" || options_.schedule == "1f1b", "pipeline: dist.schedule must be gpipe or "
             "1f1b, got '", options_.schedule, "'");
  std::vector<int64_t> starts = options_.split;
  if (starts.empty()) {
    starts = measure_split(example_shape);
  } else {
    KILN_CHECK(static_cast<int>(starts.size()) == p - 1, "pipeline: dist.split names ", starts.size(),
               " stage starts, but ", p, " ranks need ", p - 1);
    for (size_t i = 0; i < starts.size(); ++i)
      KILN_CHECK(starts[i] > (i ? starts[i - 1] : 0) && starts[i] < layers, "pipeline: dist.split must be increasing "
                 "layer indices in (0, ", layers, "), got ", starts[i], " at position ", i);
  }
  bounds_ = {0};
  bounds_.insert(bounds_.end(), starts.begin(), starts.end());
  bounds_.push_back(layers);
  // Per-example shapes at the stage boundaries, from one example through the whole model.
  NoGradGuard no_grad;
  Tensor x = Tensor::zeros(with_rows(1, example_shape));
  for (int64_t l = 0; l <= layers; ++l) {
    if (std::find(bounds_.begin(), bounds_.end(), l) != bounds_.end())
      boundary_shapes_.push_back(Shape(x.shape().begin() + 1, x.shape().end()));
    if (l < layers) x = (*model_)[static_cast<size_t>(l)]->forward(x);
  }
}

std::vector<int64_t> Pipeline::measure_split(const Shape& example_shape) {
  // Rank 0 times each layer's forward and backward on a micro-batch; every rank uses its split
  // (timings differ between ranks, the split must not).
  const int64_t layers = static_cast<int64_t>(model_->size());
  Tensor starts = Tensor::zeros({comm_.size() - 1}, DType::i64);
  if (comm_.rank() == 0) {
    std::vector<double> cost(static_cast<size_t>(layers), 0.0);
    Tensor x = Tensor::zeros(with_rows(32, example_shape));
    for (int rep = 0; rep < 3; ++rep) {
      Tensor h = x;
      for (int64_t l = 0; l < layers; ++l) {
        Tensor in = h.detach();
        in.set_requires_grad(true);
        auto t0 = Clock::now();
        Tensor out = (*model_)[static_cast<size_t>(l)]->forward(in);
        autograd::backward(ops::sum(out));
        if (rep > 0) cost[static_cast<size_t>(l)] += since(t0);  // the first pass warms caches
        h = out.detach();
      }
    }
    for (auto& p : model_->parameters()) p.set_grad(Tensor());
    std::vector<int64_t> s = balanced_split(cost, comm_.size());
    std::copy(s.begin(), s.end(), starts.data<int64_t>());
  }
  comm_.broadcast(starts, 0)->wait();
  return std::vector<int64_t>(starts.data<int64_t>(), starts.data<int64_t>() + starts.numel());
}

std::vector<Tensor> Pipeline::parameters() const {
  std::vector<Tensor> out;
  for (int64_t l = first_layer(); l < end_layer(); ++l)
    for (auto& p : (*model_)[static_cast<size_t>(l)]->parameters()) out.push_back(p);
  return out;
}

Tensor Pipeline::forward_layers(const Tensor& x) const {
  Tensor h = x;
  for (int64_t l = first_layer(); l < end_layer(); ++l) h = (*model_)[static_cast<size_t>(l)]->forward(h);
  return h;
}

double Pipeline::step(const Tensor& input, const Tensor& target, const LossFn& loss_fn) {
  const int s = stage(), p = stages();
  const bool first = s == 0, last = s == p - 1;
  const int64_t batch = input.size(0), m = std::min<int64_t>(options_.micro_batches, batch);
  auto rows_of = [&](int64_t i) { return (i + 1) * batch / m - i * batch / m; };

  struct InFlight {
    Tensor x, y, loss;  // stage input (requires grad unless first), output, weighted loss (last)
  };
  std::deque<std::pair<int64_t, InFlight>> in_flight;
  std::vector<std::pair<Tensor, WorkHandle>> sends;  // kept alive until the step ends
  double busy = 0.0, loss_sum = 0.0;
  stats_ = PipelineStats{};
  const int64_t mem_start = static_cast<int64_t>(cpu_allocator().stats().in_use_bytes);
  cpu_allocator().reset_peak();
  const auto t_step = Clock::now();

  auto forward = [&](int64_t i) {
    const int64_t lo = i * batch / m, rows = rows_of(i);
    InFlight f;
    if (first) {
      f.x = ops::slice(input, 0, lo, lo + rows);
    } else {
      f.x = Tensor::empty(with_rows(rows, boundary_shapes_[static_cast<size_t>(s)]));
      comm_.recv(f.x, s - 1, static_cast<int>(i))->wait();
      f.x.set_requires_grad(true);
    }
    auto t0 = Clock::now();
    f.y = forward_layers(f.x);
    if (last) {
      Tensor loss = loss_fn(f.y, ops::slice(target, 0, lo, lo + rows));
      loss_sum += loss.item() * static_cast<double>(rows) / static_cast<double>(batch);
      f.loss = ops::mul(loss, static_cast<double>(rows) / static_cast<double>(batch));
    }
    busy += since(t0);
    if (!last) {
      Tensor out = contiguous_raw(f.y.detach());
      sends.emplace_back(out, comm_.send(out, s + 1, static_cast<int>(i)));
    }
    in_flight.emplace_back(i, std::move(f));
    stats_.peak_in_flight = std::max<int64_t>(stats_.peak_in_flight, static_cast<int64_t>(in_flight.size()));
  };
  auto backward = [&]() {
    auto [i, f] = std::move(in_flight.front());
    in_flight.pop_front();
    Tensor grad;
    if (!last) {
      grad = Tensor::empty(f.y.shape());
      comm_.recv(grad, s + 1, kGradTag + static_cast<int>(i))->wait();
    }
    auto t0 = Clock::now();
    if (last)
      autograd::backward(f.loss);
    else if (f.y.requires_grad())  // false only for a first stage without parameters (a Flatten)
      autograd::backward(f.y, grad);
    busy += since(t0);
    if (!first) {
      Tensor gx = contiguous_raw(f.x.grad());
      sends.emplace_back(gx, comm_.send(gx, s - 1, kGradTag + static_cast<int>(i)));
    }
  };

  if (options_.schedule == "gpipe") {
    for (int64_t i = 0; i < m; ++i) forward(i);
    for (int64_t i = 0; i < m; ++i) backward();
  } else {
    const int64_t warmup = std::min<int64_t>(p - s - 1, m);
    int64_t next = 0;
    for (; next < warmup; ++next) forward(next);
    for (; next < m; ++next) {
      forward(next);
      backward();
    }
    while (!in_flight.empty()) backward();
  }
  for (auto& [t, w] : sends) w->wait();
  stats_.step_seconds = since(t_step);
  stats_.busy_seconds = busy;
  stats_.peak_activation_bytes = static_cast<int64_t>(cpu_allocator().stats().peak_in_use_bytes) - mem_start;

  // The loss lives on the last stage; every rank reports it.
  Tensor loss = Tensor::full({1}, loss_sum, DType::f64);
  comm_.broadcast(loss, p - 1)->wait();
  return loss.item();
}

void Pipeline::synchronize_model() {
  std::vector<WorkHandle> works;
  for (int owner = 0; owner < stages(); ++owner)
    for (int64_t l = bounds_[static_cast<size_t>(owner)]; l < bounds_[static_cast<size_t>(owner) + 1]; ++l) {
      auto& layer = (*model_)[static_cast<size_t>(l)];
      for (auto& t : layer->parameters()) works.push_back(comm_.broadcast(t, owner));
      for (auto& [name, b] : layer->named_buffers()) works.push_back(comm_.broadcast(b, owner));
    }
  for (auto& w : works) w->wait();
}

}  // namespace kiln::dist
