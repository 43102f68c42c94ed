// The parameter server over real MPI processes (test_dist_mpi under mpirun -np 2, 3, 4): rank 0
// serves (two servers from 4 ranks up), the others are workers.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "kiln/dist/communicator.h"
#include "kiln/dist/parameter_server.h"

namespace kiln::dist {
namespace {

// Plain SGD with lr 1 on the server: an update subtracts exactly the gradient it is given.
class SubtractGradient : public optim::Optimizer {
 public:
  explicit SubtractGradient(std::vector<Tensor> p) : Optimizer(std::move(p), 1.0) {}
  void step() override {
    for (auto& p : params())
      if (p.grad().defined())
        for (int64_t i = 0; i < p.numel(); ++i) p.data<float>()[i] -= p.grad().data<float>()[i];
  }
  optim::OptimState state_dict() const override { return {}; }
  void load_state_dict(const optim::OptimState&) override {}
  std::string name() const override { return "subtract"; }
};

OptimizerFactory subtract() {
  return [](std::vector<Tensor> keys) { return std::make_unique<SubtractGradient>(std::move(keys)); };
}

std::vector<Tensor> params_of_ones() {
  return {Tensor::ones({3, 5}), Tensor::ones({7})};  // 7 values do not split evenly over 2 servers
}

PsOptions options(const Communicator& c, const std::string& mode, int64_t s = 2) {
  return {c.size() >= 4 ? 2 : 1, mode, s};
}

TEST(ParameterServer, BspAppliesTheMeanOfTheWorkersGradients) {
  Communicator& c = world();
  PsOptions o = options(c, "bsp");
  const int workers = c.size() - o.servers;
  auto params = params_of_ones();
  if (c.rank() < o.servers) {
    ParameterServer ps(c, params, o, subtract());
    ps.run();
    EXPECT_EQ(ps.updates(), 2);
    EXPECT_EQ(ps.staleness_histogram().at(0), 2 * workers);
    return;
  }
  const int w = c.rank() - o.servers;
  PsWorker worker(c, params, o);
  for (int64_t step = 1; step <= 2; ++step) {
    for (auto& p : params) p.set_grad(Tensor::full(p.shape(), w + 1.0));  // worker w pushes w + 1
    worker.push_pull(step);
  }
  worker.finish();
  // Each update subtracts the mean over workers of (w + 1) = (workers + 1) / 2.
  const float want = 1.f - 2.f * static_cast<float>(workers + 1) / 2.f;
  for (auto& p : params)
    for (int64_t i = 0; i < p.numel(); ++i) ASSERT_FLOAT_EQ(p.data<float>()[i], want);
}

void run_async(const std::string& mode, int64_t bound, int64_t* lead_out) {
  Communicator& c = world();
  PsOptions o = options(c, mode, bound);
  auto params = params_of_ones();
  const int workers = c.size() - o.servers;
  const int64_t steps = 12;
  if (c.rank() < o.servers) {
    ParameterServer ps(c, params, o, subtract());
    ps.run();
    EXPECT_EQ(ps.updates(), steps * workers);  // every push applied on arrival
    int64_t pushes = 0;
    for (auto [staleness, count] : ps.staleness_histogram()) {
      EXPECT_GE(staleness, 0);
      pushes += count;
    }
    EXPECT_EQ(pushes, steps * workers);
    *lead_out = ps.max_lead();
  } else {
    PsWorker worker(c, params, o);
    const int w = c.rank() - o.servers;
    for (int64_t step = 1; step <= steps; ++step) {
      if (w == 0) std::this_thread::sleep_for(std::chrono::milliseconds(15));  // a straggler
      for (auto& p : params) p.set_grad(Tensor::full(p.shape(), 0.001));
      worker.push_pull(step);
    }
    worker.finish();
  }
}

TEST(ParameterServer, SspKeepsWorkersWithinTheStalenessBound) {
  Communicator& c = world();
  if (c.size() - options(c, "ssp").servers < 2) GTEST_SKIP() << "needs two workers";
  int64_t lead = -1;
  run_async("ssp", 1, &lead);
  if (c.rank() < options(c, "ssp").servers) {
    EXPECT_LE(lead, 1);
  }
}

TEST(ParameterServer, AspLetsTheFastWorkerRunAhead) {
  Communicator& c = world();
  if (c.size() - options(c, "asp").servers < 2) GTEST_SKIP() << "needs two workers";
  int64_t lead = -1;
  run_async("asp", 0, &lead);
  if (c.rank() < options(c, "asp").servers) {
    EXPECT_GT(lead, 1);
  }
}

TEST(ParameterServer, CompressedPushesWithErrorFeedback) {
  Communicator& c = world();
  for (const char* kind : {"topk", "int8"}) {
    PsOptions o = options(c, "bsp");
    o.compression = kind;
    o.topk_ratio = 0.5;  // half of each shard per push: the rest arrives with the next push
    const int workers = c.size() - o.servers;
    auto params = params_of_ones();
    if (c.rank() < o.servers) {
      ParameterServer ps(c, params, o, subtract());
      ps.run();
      continue;
    }
    PsWorker worker(c, params, o);
    const int w = c.rank() - o.servers;
    // Two pushes of the same gradient g_i = (i + 1) * (w + 1) / 100, then two of zero: with error
    // feedback everything owed has arrived after the fourth (top-k sends the larger half first).
    for (int64_t step = 1; step <= 4; ++step) {
      for (auto& p : params) {
        Tensor g = Tensor::zeros(p.shape());
        for (int64_t i = 0; i < p.numel(); ++i) g.data<float>()[i] = step <= 2 ? float(i + 1) * float(w + 1) / 100.f : 0.f;
        p.set_grad(g);
      }
      worker.push_pull(step);
    }
    worker.finish();
    // Each worker owed 2 g; the server subtracted the mean over workers: 2 (i + 1) (W + 1) / 2 / 100.
    for (auto& p : params)
      for (int64_t i = 0; i < p.numel(); ++i) {
        const float want = 1.f - float(i + 1) * float(workers + 1) / 100.f;
        ASSERT_NEAR(p.data<float>()[i], want, std::string(kind) == "int8" ? 2e-3 : 1e-6) << kind << " " << i;
      }
  }
}

TEST(ParameterServer, NeedsAWorker) {
  Communicator& c = world();
  EXPECT_THROW(ParameterServer(c, params_of_ones(), PsOptions{c.size(), "bsp", 0}, subtract()), ValueError);
  EXPECT_THROW(PsWorker(c, params_of_ones(), PsOptions{1, "fast", 0}), ValueError);
}

}  // namespace
}  // namespace kiln::dist
