// The communicator over real MPI processes: ctest runs this binary under `mpirun -np N` (N = 2,
// 3, 4). Every rank regenerates every other rank's input, so each can check the collective's
// result against the fixed tree computed locally, bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "kiln/dist/communicator.h"
#include "kiln/dist/tree_reduce.h"

namespace kiln::dist {
namespace {

Tensor rank_data(int rank, int64_t n) {
  std::mt19937 gen(static_cast<uint32_t>(1000 + rank));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(gen) * static_cast<float>(1 << (gen() % 20));
  return Tensor::from_vector(v);
}

Tensor expected_sum(int size, int64_t n) {
  std::vector<Tensor> all;
  std::vector<void*> leaves;
  for (int r = 0; r < size; ++r) all.push_back(rank_data(r, n));
  for (auto& t : all) leaves.push_back(t.raw_data());
  tree_reduce(leaves, n, DType::f32);
  return all[0];
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() &&
         std::memcmp(a.raw_data(), b.raw_data(), static_cast<size_t>(a.numel()) * sizeof(float)) == 0;
}

TEST(MpiCommunicator, IsMpiWithTheLaunchedSize) {
  Communicator& c = world();
  EXPECT_EQ(c.backend(), "mpi");
  EXPECT_EQ(c.size(), std::atoi(std::getenv("OMPI_COMM_WORLD_SIZE")));
  EXPECT_EQ(c.rank(), std::atoi(std::getenv("OMPI_COMM_WORLD_RANK")));
}

TEST(MpiCommunicator, AllreduceIsTheFixedTree) {
  Communicator& c = world();
  for (int64_t n : {1, 1000, 100003}) {
    Tensor t = rank_data(c.rank(), n);
    c.allreduce(t, ReduceOp::sum)->wait();
    EXPECT_TRUE(same_bits(t, expected_sum(c.size(), n))) << "n = " << n;
  }
}

TEST(MpiCommunicator, ManyOperationsInFlightAtOnce) {
  Communicator& c = world();
  std::vector<Tensor> ts;
  std::vector<WorkHandle> works;
  for (int i = 0; i < 6; ++i) {
    ts.push_back(rank_data(c.rank(), 5000 + i));
    works.push_back(c.allreduce(ts.back(), ReduceOp::sum));
  }
  for (int i = 0; i < 6; ++i) {
    works[static_cast<size_t>(i)]->wait();
    EXPECT_TRUE(same_bits(ts[static_cast<size_t>(i)], expected_sum(c.size(), 5000 + i)));
  }
}

TEST(MpiCommunicator, ReduceScatterAllgatherBroadcast) {
  Communicator& c = world();
  const int64_t block = 1001;
  Tensor in = rank_data(c.rank(), block * c.size()), out = Tensor::empty({block});
  c.reduce_scatter(in, out, ReduceOp::sum)->wait();
  Tensor want = expected_sum(c.size(), block * c.size());
  EXPECT_EQ(0, std::memcmp(out.raw_data(), want.data<float>() + c.rank() * block, block * sizeof(float)));

  Tensor mine = Tensor::full({3}, c.rank(), DType::i64), all = Tensor::empty({3 * c.size()}, DType::i64);
  c.allgather(mine, all)->wait();
  for (int r = 0; r < c.size(); ++r) EXPECT_EQ(all.data<int64_t>()[3 * r + 2], r);

  for (int root = 0; root < c.size(); ++root) {
    Tensor b = rank_data(c.rank(), 77);
    c.broadcast(b, root)->wait();
    EXPECT_TRUE(same_bits(b, rank_data(root, 77))) << "root " << root;
  }
  c.barrier()->wait();
}

TEST(MpiCommunicator, SendAndReceiveBothWaysWithoutDeadlock) {
  // Every rank sends 4 MB to the next and receives from the previous, both posted before either
  // is waited on: large messages must not block the communication thread.
  Communicator& c = world();
  const int next = (c.rank() + 1) % c.size(), prev = (c.rank() + c.size() - 1) % c.size();
  Tensor out = rank_data(c.rank(), 1 << 20), in = Tensor::empty({1 << 20});
  auto s = c.send(out, next, 7);
  auto r = c.recv(in, prev, 7);
  r->wait();
  s->wait();
  EXPECT_TRUE(same_bits(in, rank_data(prev, 1 << 20)));
  EXPECT_GT(c.stats().bytes_sent, int64_t{4} << 20);
}

TEST(MpiCommunicator, BadCallsAreClearErrors) {
  Communicator& c = world();
  EXPECT_THROW(c.send(Tensor::zeros({2}), c.rank(), 0), IndexError);
  EXPECT_THROW(c.recv(Tensor::zeros({2}), c.size(), 0), IndexError);
  EXPECT_THROW(c.allreduce(Tensor::zeros({2}, DType::u8), ReduceOp::sum), TypeError);
  EXPECT_THROW(c.allgather(Tensor::zeros({2}), Tensor::zeros({3})), ValueError);
  EXPECT_TRUE(all_equal(c, 5));
  EXPECT_FALSE(all_equal(c, c.rank()));
}

}  // namespace
}  // namespace kiln::dist

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // One report: ranks other than 0 print nothing (their failures still fail the job's exit code).
  if (std::getenv("OMPI_COMM_WORLD_RANK") && std::atoi(std::getenv("OMPI_COMM_WORLD_RANK")) != 0)
    delete ::testing::UnitTest::GetInstance()->listeners().Release(
        ::testing::UnitTest::GetInstance()->listeners().default_result_printer());
  int rc = RUN_ALL_TESTS();
  kiln::dist::shutdown();
  return rc;
}
