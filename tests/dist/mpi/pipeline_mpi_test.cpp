// Pipeline parallelism over real MPI processes (ctest runs test_dist_mpi under mpirun -np 2, 3
// and 4): each stage's gradients against the unsplit model's, computed on every rank.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/autograd/engine.h"
#include "kiln/core/rng.h"
#include "kiln/dist/communicator.h"
#include "kiln/dist/pipeline.h"
#include "kiln/nn/models.h"
#include "kiln/ops/ops.h"

namespace kiln::dist {
namespace {

Tensor cross_entropy(const Tensor& logits, const Tensor& target) { return ops::cross_entropy(logits, target); }

Tensor labels(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = (i * 3) % 10;
  return Tensor::from_vector(v);
}

std::shared_ptr<nn::Sequential> model_named(const std::string& name) {
  nn::ModelSpec spec;
  spec.name = name;
  return std::dynamic_pointer_cast<nn::Sequential>(nn::make_model(spec, 7));
}

// ||a - b|| / ||b|| over all of a stage's gradients.
double relative_difference(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const float* x = a[i].data<float>();
    const float* y = b[i].data<float>();
    for (int64_t k = 0; k < a[i].numel(); ++k) {
      diff += (double(x[k]) - y[k]) * (double(x[k]) - y[k]);
      norm += double(y[k]) * y[k];
    }
  }
  return std::sqrt(diff / norm);
}

void check_gradients(const std::string& name, const std::string& schedule, int64_t micro_batches) {
  Communicator& comm = world();
  auto model = model_named(name);
  auto reference = model_named(name);  // the same weights (same seed), never split
  Generator gen(11);
  Tensor x = randn({24, 1, 28, 28}, gen);
  Tensor y = labels(24);

  Pipeline pipe(comm, model, {1, 28, 28}, {micro_batches, schedule, {}});
  const double loss = pipe.step(x, y, cross_entropy);

  // The non-pipelined computation of the same thing: the unsplit model, the same micro-batches,
  // gradients accumulated in one process.
  double ref_loss = 0;
  for (int64_t i = 0; i < micro_batches; ++i) {
    const int64_t lo = i * 24 / micro_batches, hi = (i + 1) * 24 / micro_batches;
    const double share = static_cast<double>(hi - lo) / 24.0;
    Tensor l = cross_entropy(reference->forward(ops::slice(x, 0, lo, hi)), ops::slice(y, 0, lo, hi));
    ref_loss += l.item() * share;
    autograd::backward(ops::mul(l, share));
  }
  // And the whole batch at once, unsplit and unbatched: equal up to the different summation order.
  auto whole = model_named(name);
  autograd::backward(cross_entropy(whole->forward(x), y));
  EXPECT_NEAR(loss, ref_loss, 1e-6 * std::abs(ref_loss));
  std::vector<Tensor> got, want, want_whole;
  for (int64_t l = pipe.first_layer(); l < pipe.end_layer(); ++l) {
    for (auto& p : (*model)[static_cast<size_t>(l)]->parameters()) got.push_back(p.grad());
    for (auto& p : (*reference)[static_cast<size_t>(l)]->parameters()) want.push_back(p.grad());
    for (auto& p : (*whole)[static_cast<size_t>(l)]->parameters()) want_whole.push_back(p.grad());
  }
  if (got.empty()) return;  // a stage of parameter-free layers (ReLU, pooling)
  for (auto& g : got) ASSERT_TRUE(g.defined());
  EXPECT_LT(relative_difference(got, want), 1e-6) << name << " " << schedule << " stage " << pipe.stage();
  EXPECT_LT(relative_difference(got, want_whole), 1e-5) << name << " " << schedule << " stage " << pipe.stage();
}

TEST(Pipeline, GPipeGradientsEqualTheUnsplitModel) {
  check_gradients("mlp", "gpipe", 4);
  check_gradients("cnn", "gpipe", 4);
}

TEST(Pipeline, OneForwardOneBackwardGradientsEqualTheUnsplitModel) {
  check_gradients("mlp", "1f1b", 4);
  check_gradients("cnn", "1f1b", 4);
  check_gradients("cnn", "1f1b", 3);  // micro-batches of unequal size (24 / 3 is even; 24 / 5 is not)
  check_gradients("cnn", "1f1b", 5);
}

TEST(Pipeline, OneForwardOneBackwardKeepsFewerMicroBatchesInFlight) {
  Communicator& comm = world();
  auto model = model_named("cnn");
  Generator gen(3);
  Tensor x = randn({32, 1, 28, 28}, gen), y = labels(32);
  Pipeline gpipe(comm, model, {1, 28, 28}, {8, "gpipe", {}});
  gpipe.step(x, y, cross_entropy);
  EXPECT_EQ(gpipe.last_stats().peak_in_flight, 8);
  std::vector<int64_t> starts(gpipe.bounds().begin() + 1, gpipe.bounds().end() - 1);  // the same split
  Pipeline one(comm, model, {1, 28, 28}, {8, "1f1b", starts});
  one.step(x, y, cross_entropy);
  EXPECT_EQ(one.last_stats().peak_in_flight, comm.size() - comm.rank());
}

TEST(Pipeline, BalancedSplitAndBadStrategies) {
  EXPECT_EQ(balanced_split({1, 1, 1, 1}, 2), (std::vector<int64_t>{2}));
  EXPECT_EQ(balanced_split({5, 1, 1, 1, 1, 1}, 2), (std::vector<int64_t>{1}));
  EXPECT_EQ(balanced_split({1, 2, 3, 4, 5}, 3), (std::vector<int64_t>{3, 4}));  // 6 | 4 | 5
  EXPECT_THROW(balanced_split({1, 1}, 3), ValueError);
  Communicator& comm = world();
  auto mlp = model_named("mlp");
  std::vector<int64_t> bad(static_cast<size_t>(comm.size() - 1), 0);  // stage starts must be > 0
  EXPECT_THROW(Pipeline(comm, mlp, {1, 28, 28}, {4, "1f1b", bad}), ValueError);
  EXPECT_THROW(Pipeline(comm, mlp, {1, 28, 28}, {4, "zigzag", {}}), ValueError);
}

}  // namespace
}  // namespace kiln::dist
