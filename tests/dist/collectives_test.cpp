// The fixed reduction tree and the collective algorithms, with ranks as threads (mailbox
// transport). The same algorithms over real MPI processes: tests/dist/mpi/.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "dist/mailbox_transport.h"
#include "kiln/dist/collectives.h"
#include "kiln/dist/tree_reduce.h"

namespace kiln::dist {
namespace {

using testing::run_ranks;

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1000.f, 1000.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(gen) * std::pow(10.f, static_cast<float>(gen() % 7) - 3.f);  // mixed magnitudes
  return v;
}

float tree_of(std::vector<float> v) {
  std::vector<void*> leaves;
  for (auto& x : v) leaves.push_back(&x);
  tree_reduce(leaves, 1, DType::f32);
  return v[0];
}

TEST(TreeReduce, GroupsAsDocumented) {
  // 1e8f + 1 == 1e8f, so the grouping shows in the result.
  EXPECT_EQ(tree_of({1e8f, 1.f, -1e8f, 1.f}), 2.f);   // (1e8 + -1e8) + (1 + 1)
  float left_fold = ((1e8f + 1.f) + -1e8f) + 1.f;
  EXPECT_EQ(left_fold, 1.f);
  std::vector<float> v = random_floats(7, 1);
  EXPECT_EQ(tree_of({v[0], v[1], v[2]}), (v[0] + v[2]) + v[1]);
  EXPECT_EQ(tree_of({v[0], v[1], v[2], v[3]}), (v[0] + v[2]) + (v[1] + v[3]));
  EXPECT_EQ(tree_of({v[0], v[1], v[2], v[3], v[4]}), ((v[0] + v[4]) + v[2]) + (v[1] + v[3]));
  EXPECT_EQ(tree_of({v[0], v[1], v[2], v[3], v[4], v[5], v[6]}),
            (((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + v[3])));
  EXPECT_EQ(tree_of({v[0]}), v[0]);
}

TEST(TreeReduce, LocalThenAcrossRanksIsTheWholeTree) {
  // Rank r holding leaves r, r+N, ... and summing them with T(L) before T(N) across ranks gives
  // T(N*L) bit for bit: the property data parallel training relies on.
  for (int n_ranks : {1, 2, 4})
    for (int local : {1, 2, 4, 8}) {
      const int k = n_ranks * local;
      std::vector<float> leaves = random_floats(k, static_cast<uint32_t>(k * 31 + local));
      std::vector<float> partial(static_cast<size_t>(n_ranks));
      for (int r = 0; r < n_ranks; ++r) {
        std::vector<float> mine;
        for (int j = 0; j < local; ++j) mine.push_back(leaves[static_cast<size_t>(r + j * n_ranks)]);
        partial[static_cast<size_t>(r)] = tree_of(mine);
      }
      EXPECT_EQ(tree_of(partial), tree_of(leaves)) << n_ranks << " ranks x " << local;
    }
}

TEST(TreeReduce, CloseToTheExactSum) {
  std::vector<float> v = random_floats(64, 9);
  double exact = 0;
  for (float x : v) exact += x;
  EXPECT_NEAR(tree_of(v), exact, 1e-4 * std::abs(exact) + 1e-2);
}

template <typename T>
std::vector<T> rank_data(int rank, int64_t n) {
  std::vector<T> v(static_cast<size_t>(n));
  std::vector<float> f = random_floats(n, static_cast<uint32_t>(100 + rank));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<T>(f[static_cast<size_t>(i)]);
  return v;
}

template <typename T>
std::vector<T> expected_reduction(int size, int64_t n, DType dtype, ReduceOp op) {
  std::vector<std::vector<T>> all;
  for (int r = 0; r < size; ++r) all.push_back(rank_data<T>(r, n));
  std::vector<void*> leaves;
  for (auto& v : all) leaves.push_back(v.data());
  tree_reduce(leaves, n, dtype, op);
  return all[0];
}

template <typename T>
void check_allreduce(int size, int64_t n, DType dtype, ReduceOp op) {
  const std::vector<T> want = expected_reduction<T>(size, n, dtype, op);
  run_ranks(size, [&](Transport& t) {
    std::vector<T> v = rank_data<T>(t.rank(), n);
    tree_allreduce(t, v.data(), n, dtype, op);
    ASSERT_TRUE(n == 0 || std::memcmp(v.data(), want.data(), sizeof(T) * static_cast<size_t>(n)) == 0)
        << "rank " << t.rank() << " of " << size << ", n " << n;
  });
}

TEST(Collectives, AllreduceIsTheTreeOnEveryRank) {
  for (int size = 1; size <= 8; ++size)
    for (int64_t n : {0, 1, 7, 1000}) {
      check_allreduce<float>(size, n, DType::f32, ReduceOp::sum);
      check_allreduce<double>(size, n, DType::f64, ReduceOp::sum);
    }
  check_allreduce<int64_t>(5, 33, DType::i64, ReduceOp::sum);
  check_allreduce<float>(6, 33, DType::f32, ReduceOp::max);
  check_allreduce<int64_t>(3, 33, DType::i64, ReduceOp::min);
}

TEST(Collectives, ReduceScatterGivesEachRankItsBlock) {
  for (int size : {1, 2, 3, 4, 6, 8}) {
    const int64_t block = 5, n = block * size;
    const std::vector<float> want = expected_reduction<float>(size, n, DType::f32, ReduceOp::sum);
    run_ranks(size, [&](Transport& t) {
      std::vector<float> in = rank_data<float>(t.rank(), n), out(block);
      tree_reduce_scatter(t, in.data(), out.data(), block, DType::f32, ReduceOp::sum);
      ASSERT_EQ(0, std::memcmp(out.data(), want.data() + t.rank() * block, sizeof(float) * block))
          << "rank " << t.rank() << " of " << size;
    });
  }
}

TEST(Collectives, AllgatherAndBroadcast) {
  for (int size : {1, 2, 3, 5}) {
    run_ranks(size, [&](Transport& t) {
      std::vector<int64_t> in = {t.rank() * 10, t.rank() * 10 + 1}, out(static_cast<size_t>(2 * size));
      ring_allgather(t, in.data(), out.data(), sizeof(int64_t) * 2);
      for (int r = 0; r < size; ++r) {
        ASSERT_EQ(out[static_cast<size_t>(2 * r)], r * 10);
        ASSERT_EQ(out[static_cast<size_t>(2 * r + 1)], r * 10 + 1);
      }
      for (int root = 0; root < size; ++root) {
        std::vector<float> v = rank_data<float>(t.rank(), 9), want = rank_data<float>(root, 9);
        tree_broadcast(t, v.data(), sizeof(float) * 9, root);
        ASSERT_EQ(v, want) << "root " << root << " rank " << t.rank();
      }
      barrier(t);
    });
  }
}

}  // namespace
}  // namespace kiln::dist
