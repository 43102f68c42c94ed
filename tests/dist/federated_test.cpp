// Client partitions for federated averaging and the weighted model average.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "dist/mailbox_transport.h"
#include "kiln/dist/federated.h"
#include "kiln/dist/threaded_communicator.h"

namespace kiln::dist {
namespace {

std::vector<int64_t> ten_classes(int64_t n) {
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = (i * 7) % 10;
  return labels;
}

void expect_disjoint(const std::vector<std::vector<int64_t>>& parts, int64_t n) {
  std::set<int64_t> seen;
  for (auto& p : parts)
    for (int64_t i : p) {
      EXPECT_TRUE(i >= 0 && i < n);
      EXPECT_TRUE(seen.insert(i).second) << "example " << i << " given twice";
    }
}

TEST(FederatedPartition, IidDealsEveryExampleOnce) {
  auto parts = partition_clients(ten_classes(1003), 4, "iid", 0.8, 1);
  expect_disjoint(parts, 1003);
  size_t total = 0;
  for (auto& p : parts) {
    EXPECT_GE(p.size(), 250u);
    EXPECT_LE(p.size(), 251u);
    total += p.size();
  }
  EXPECT_EQ(total, 1003u);
}

TEST(FederatedPartition, NonIidClientsHoldMostlyTheirTwoClasses) {
  auto labels = ten_classes(6000);
  auto parts = partition_clients(labels, 4, "noniid", 0.8, 1);
  expect_disjoint(parts, 6000);
  for (int c = 0; c < 4; ++c) {
    const auto& p = parts[static_cast<size_t>(c)];
    EXPECT_EQ(p.size(), 1500u);
    int64_t major = 0;
    for (int64_t i : p) {
      int64_t y = labels[static_cast<size_t>(i)];
      major += y == 2 * c || y == 2 * c + 1;
    }
    // 80% drawn from its two classes, and the random rest adds about 2/10 of the remaining 20%.
    EXPECT_GE(static_cast<double>(major) / 1500.0, 0.8) << "client " << c;
    EXPECT_LE(static_cast<double>(major) / 1500.0, 0.9) << "client " << c;
  }
}

TEST(FederatedPartition, BadArguments) {
  EXPECT_THROW(partition_clients(ten_classes(10), 4, "random", 0.8, 1), ValueError);
  EXPECT_THROW(partition_clients(ten_classes(3), 4, "iid", 0.8, 1), ValueError);
  EXPECT_THROW(partition_clients(ten_classes(10), 2, "noniid", 1.5, 1), ValueError);
}

TEST(FederatedAverage, WeightedBySampleCounts) {
  testing::Mailboxes boxes;
  const int size = 3;
  std::vector<std::thread> threads;
  std::vector<float> results(size);
  for (int r = 0; r < size; ++r)
    threads.emplace_back([&, r] {
      ThreadedCommunicator comm([&] { return std::make_unique<testing::MailboxTransport>(boxes, r, size); });
      Tensor w = Tensor::full({5}, static_cast<double>(r));
      Tensor steps = Tensor::full({1}, 7 + r, DType::i64);  // integer buffers stay local
      weighted_average(comm, {w, steps}, static_cast<double>(r + 1));
      results[static_cast<size_t>(r)] = w.data<float>()[4];
      EXPECT_EQ(steps.data<int64_t>()[0], 7 + r);
    });
  for (auto& t : threads) t.join();
  for (float v : results) EXPECT_FLOAT_EQ(v, (0.f * 1 + 1.f * 2 + 2.f * 3) / 6.f);
}

}  // namespace
}  // namespace kiln::dist
