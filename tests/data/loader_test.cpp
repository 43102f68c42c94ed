// DataLoader: coverage of every index per epoch, seeded order, resume, workers, errors.
#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "kiln/data/data_loader.h"
#include "kiln/data/tensor_dataset.h"

using namespace kiln;
using namespace kiln::data;

namespace {

// Example i has input [i, -i] (f32) and target i (i64), so a batch can be checked against its indices.
std::shared_ptr<TensorDataset> numbered(int64_t n) {
  std::vector<float> in;
  std::vector<int64_t> tg;
  for (int64_t i = 0; i < n; ++i) {
    in.push_back(static_cast<float>(i));
    in.push_back(static_cast<float>(-i));
    tg.push_back(i);
  }
  return std::make_shared<TensorDataset>(Tensor::from_vector(in, {n, 2}), Tensor::from_vector(tg, {n}));
}

void check_batch_matches_indices(const Batch& b) {
  auto in = b.input.to_vector<float>();
  auto tg = b.target.to_vector<int64_t>();
  ASSERT_EQ(tg.size(), b.indices.size());
  for (size_t k = 0; k < b.indices.size(); ++k) {
    EXPECT_EQ(tg[k], b.indices[k]);
    EXPECT_EQ(in[2 * k], static_cast<float>(b.indices[k]));
    EXPECT_EQ(in[2 * k + 1], -static_cast<float>(b.indices[k]));
  }
}

// All batches of the loader's current epoch, as lists of indices.
std::vector<std::vector<int64_t>> run_epoch(DataLoader& loader) {
  std::vector<std::vector<int64_t>> out;
  while (auto b = loader.next()) out.push_back(b->indices);
  return out;
}

std::vector<int64_t> flatten(const std::vector<std::vector<int64_t>>& batches) {
  std::vector<int64_t> all;
  for (const auto& b : batches) all.insert(all.end(), b.begin(), b.end());
  return all;
}

// A dataset that throws for one index and can be slow, to test errors and shutdown.
class TrickyDataset : public Dataset {
 public:
  TrickyDataset(int64_t n, int64_t bad, int sleep_us) : inner_(numbered(n)), bad_(bad), sleep_us_(sleep_us) {}
  int64_t size() const override { return inner_->size(); }
  Example get(int64_t i) const override { return inner_->get(i); }
  Batch get_batch(const std::vector<int64_t>& idx) const override {
    calls_++;
    if (sleep_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(sleep_us_));
    for (int64_t i : idx)
      if (i == bad_ && fail_) throw IoError("example " + std::to_string(i) + " is unreadable");
    return inner_->get_batch(idx);
  }
  std::shared_ptr<TensorDataset> inner_;
  int64_t bad_;
  int sleep_us_;
  mutable std::atomic<bool> fail_{true};
  mutable std::atomic<int> calls_{0};
};

}  // namespace

TEST(DataLoader, EveryIndexOncePerEpoch) {
  for (int64_t n : {1, 7, 64, 100}) {
    for (int64_t bs : {1, 3, 7, 64, 128}) {
      for (int workers : {0, 1, 3}) {
        for (bool drop_last : {false, true}) {
          SCOPED_TRACE(testing::Message() << "n=" << n << " bs=" << bs << " workers=" << workers
                                          << " drop_last=" << drop_last);
          LoaderOptions o;
          o.batch_size = bs;
          o.num_workers = workers;
          o.drop_last = drop_last;
          o.seed = 11;
          DataLoader loader(numbered(n), o);
          const int64_t expect_batches = drop_last ? n / bs : (n + bs - 1) / bs;
          EXPECT_EQ(loader.batches_per_epoch(), expect_batches);
          for (int epoch = 0; epoch < 2; ++epoch) {
            std::vector<std::vector<int64_t>> batches;
            while (auto b = loader.next()) {
              check_batch_matches_indices(*b);
              batches.push_back(b->indices);
            }
            ASSERT_EQ(static_cast<int64_t>(batches.size()), expect_batches);
            for (size_t k = 0; k < batches.size(); ++k) {
              bool last = k + 1 == batches.size();
              if (!last || drop_last || n % bs == 0)
                EXPECT_EQ(static_cast<int64_t>(batches[k].size()), bs);
              else
                EXPECT_EQ(static_cast<int64_t>(batches[k].size()), n % bs);
            }
            auto all = flatten(batches);
            std::set<int64_t> unique(all.begin(), all.end());
            EXPECT_EQ(unique.size(), all.size()) << "an index appeared twice";
            EXPECT_EQ(static_cast<int64_t>(all.size()), drop_last ? (n / bs) * bs : n);
            for (int64_t i : all) EXPECT_TRUE(i >= 0 && i < n);
            auto order = epoch_order(n, 11, epoch);
            order.resize(all.size());
            EXPECT_EQ(all, order);
            EXPECT_EQ(loader.state().epoch, epoch + 1);
            EXPECT_EQ(loader.state().batch, 0);
          }
        }
      }
    }
  }
}

TEST(DataLoader, OrderDependsOnSeedAndEpochOnly) {
  auto ds = numbered(50);
  auto order_of = [&](uint64_t seed, int workers, int epochs) {
    LoaderOptions o;
    o.batch_size = 8;
    o.seed = seed;
    o.num_workers = workers;
    DataLoader loader(ds, o);
    std::vector<std::vector<int64_t>> per_epoch;
    for (int e = 0; e < epochs; ++e) per_epoch.push_back(flatten(run_epoch(loader)));
    return per_epoch;
  };
  auto a = order_of(5, 0, 3), b = order_of(5, 2, 3), c = order_of(6, 1, 3);
  EXPECT_EQ(a, b);                // same seed, any worker count: same order
  EXPECT_NE(a[0], a[1]);          // epochs differ
  EXPECT_NE(a[1], a[2]);
  EXPECT_NE(a[0], c[0]);          // seeds differ
  std::vector<int64_t> sorted(50);
  for (int i = 0; i < 50; ++i) sorted[i] = i;
  EXPECT_NE(a[0], sorted);        // shuffled
  LoaderOptions o;
  o.shuffle = false;
  o.batch_size = 8;
  DataLoader plain(ds, o);
  EXPECT_EQ(flatten(run_epoch(plain)), sorted);
}

TEST(DataLoader, ShuffleIsUniform) {
  // Fisher-Yates: element 0 lands in each of 5 positions with probability 1/5.
  const int trials = 5000;
  std::vector<int> where(5, 0);
  for (int e = 0; e < trials; ++e) {
    auto order = epoch_order(5, 123, e);
    for (int p = 0; p < 5; ++p)
      if (order[p] == 0) where[p]++;
  }
  // Binomial(5000, 0.2): sd ~ 28; allow 5 sd.
  for (int p = 0; p < 5; ++p) EXPECT_NEAR(where[p], trials / 5, 140) << "position " << p;
}

TEST(DataLoader, ResumeReproducesRemainingBatches) {
  auto ds = numbered(37);
  for (int workers : {0, 1, 3}) {
    SCOPED_TRACE(workers);
    LoaderOptions o;
    o.batch_size = 5;
    o.seed = 99;
    o.num_workers = workers;
    // The transform writes the batch seed into the inputs, so resume must reproduce it too.
    o.transform = [](Batch& b, uint64_t seed) {
      b.input = clone_raw(b.input);
      b.input.data<float>()[0] = static_cast<float>(seed % 1000003);
    };
    DataLoader a(ds, o);
    run_epoch(a);
    for (int k = 0; k < 3; ++k) ASSERT_TRUE(a.next().has_value());
    LoaderState saved = a.state();
    EXPECT_EQ(saved.epoch, 1);
    EXPECT_EQ(saved.batch, 3);
    std::vector<Batch> rest_a;
    while (auto b = a.next()) rest_a.push_back(*b);
    auto next_epoch_a = run_epoch(a);

    DataLoader b(ds, o);
    b.next();  // some unrelated progress first: set_state must discard it
    b.set_state(saved);
    EXPECT_EQ(b.state().epoch, 1);
    EXPECT_EQ(b.state().batch, 3);
    std::vector<Batch> rest_b;
    while (auto x = b.next()) rest_b.push_back(*x);
    ASSERT_EQ(rest_a.size(), rest_b.size());
    for (size_t k = 0; k < rest_a.size(); ++k) {
      EXPECT_EQ(rest_a[k].indices, rest_b[k].indices);
      EXPECT_EQ(rest_a[k].input.to_vector<float>(), rest_b[k].input.to_vector<float>());
      EXPECT_EQ(rest_a[k].input.to_vector<float>()[0], static_cast<float>(batch_seed(99, 1, 3 + k) % 1000003));
    }
    EXPECT_EQ(run_epoch(b), next_epoch_a);
  }
}

TEST(DataLoader, SetStateValidates) {
  LoaderOptions o;
  o.batch_size = 4;
  DataLoader loader(numbered(10), o);  // 3 batches
  EXPECT_THROW(loader.set_state({-1, 0}), ValueError);
  EXPECT_THROW(loader.set_state({0, 4}), ValueError);
  loader.set_state({2, 3});  // at the end of epoch 2
  EXPECT_FALSE(loader.next().has_value());
  EXPECT_EQ(loader.state().epoch, 3);
}

TEST(DataLoader, WorkerExceptionsReachNext) {
  for (int workers : {0, 1, 4}) {
    SCOPED_TRACE(workers);
    auto ds = std::make_shared<TrickyDataset>(40, 13, 0);
    LoaderOptions o;
    o.batch_size = 4;
    o.shuffle = false;  // index 13 is in batch 3
    o.num_workers = workers;
    DataLoader loader(ds, o);
    for (int k = 0; k < 3; ++k) ASSERT_TRUE(loader.next().has_value());
    EXPECT_THROW(loader.next(), IoError);
    EXPECT_EQ(loader.state().batch, 3);  // stays at the failing batch
    try {
      loader.next();
      FAIL();
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find("example 13"), std::string::npos);
    }
    ds->fail_ = false;  // the problem goes away: the retry succeeds and the epoch completes
    auto b = loader.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->indices, (std::vector<int64_t>{12, 13, 14, 15}));
    int rest = 0;
    while (loader.next()) ++rest;
    EXPECT_EQ(rest, 6);
  }
}

TEST(DataLoader, DestructorStopsWorkersMidEpoch) {
  auto ds = std::make_shared<TrickyDataset>(10000, -1, 200);
  auto start = std::chrono::steady_clock::now();
  {
    LoaderOptions o;
    o.batch_size = 2;
    o.num_workers = 4;
    o.prefetch = 4;
    DataLoader loader(ds, o);
    ASSERT_TRUE(loader.next().has_value());
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(ms, 2000);
  // Workers only ran ahead by the prefetch window (4 workers x 4), not through the epoch.
  EXPECT_LE(ds->calls_.load(), 1 + 16 + 4);
  // A loader destroyed before any next() also shuts down cleanly.
  { DataLoader idle(ds, LoaderOptions{}); }
}

TEST(DataLoader, EmptyDatasetAndBadOptions) {
  DataLoader loader(numbered(0), LoaderOptions{});
  EXPECT_EQ(loader.batches_per_epoch(), 0);
  EXPECT_FALSE(loader.next().has_value());
  EXPECT_EQ(loader.state().epoch, 1);
  LoaderOptions bad;
  bad.batch_size = 0;
  EXPECT_THROW(DataLoader(numbered(3), bad), ValueError);
  EXPECT_THROW(DataLoader(nullptr, LoaderOptions{}), ValueError);
}
