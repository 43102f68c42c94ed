// Gradient compressors against hand-computed results, with ranks as threads: a
// ThreadedCommunicator per rank over the in-process mailbox transport.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "dist/mailbox_transport.h"
#include "kiln/dist/compression.h"
#include "kiln/dist/threaded_communicator.h"

namespace kiln::dist {
namespace {

// Runs fn(comm) for `size` ranks, each with its own communicator and thread.
void with_ranks(int size, const std::function<void(Communicator&)>& fn) {
  testing::Mailboxes boxes;
  std::vector<std::unique_ptr<ThreadedCommunicator>> comms(static_cast<size_t>(size));
  std::vector<std::thread> starters;
  for (int r = 0; r < size; ++r)
    comms[static_cast<size_t>(r)] = std::make_unique<ThreadedCommunicator>(
        [&boxes, r, size] { return std::make_unique<testing::MailboxTransport>(boxes, r, size); });
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r)
    threads.emplace_back([&, r] {
      try {
        fn(*comms[static_cast<size_t>(r)]);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

TEST(Int8Quantization, RoundTripWithinHalfAStep) {
  std::vector<float> x(600);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * (i < 256 ? 1.f : 100.f);
  std::vector<int8_t> q(x.size());
  std::vector<float> scales(3), back(x.size(), 0.f);
  quantize_int8(x.data(), 600, q.data(), scales.data());
  dequantize_add_int8(q.data(), scales.data(), 600, back.data());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_LE(std::abs(back[i] - x[i]), 0.5f * scales[i / 256] * 1.0001f) << i;
  float amax = 0.f;
  for (size_t i = 0; i < 256; ++i) amax = std::max(amax, std::abs(x[i]));
  EXPECT_FLOAT_EQ(scales[0] * 127.f, amax);  // the block's largest magnitude maps to 127
}

TEST(TopKCompression, SendsTheLargestEntriesAndFeedsBackTheRest) {
  with_ranks(2, [](Communicator& c) {
    auto topk = make_compressor("topk", 0.25);  // k = 1 of 4
    std::vector<float> g = c.rank() == 0 ? std::vector<float>{1, -5, 2, 0} : std::vector<float>{0, 1, 0, 3};
    std::vector<float> out = g;
    topk->post(c, 0, out.data(), 4);
    topk->finish(0, out.data(), 4);
    // rank 0 sends (1, -5), rank 1 sends (3, 3): the sum has -5 at 1 and 3 at 3.
    EXPECT_EQ(out, (std::vector<float>{0, -5, 0, 3}));
    // Next step with zero gradient: the residuals (rank 0: 1, _, 2, 0; rank 1: 0, 1, 0, _) go out.
    std::vector<float> zero(4, 0.f);
    topk->post(c, 0, zero.data(), 4);
    topk->finish(0, zero.data(), 4);
    EXPECT_EQ(zero, (std::vector<float>{0, 1, 2, 0}));  // rank 0 sends index 2 (2), rank 1 index 1 (1)
  });
}

TEST(Int8Compression, SumOverRanksWithinQuantisationError) {
  with_ranks(3, [](Communicator& c) {
    auto int8 = make_compressor("int8", 0);
    std::vector<float> g(1000), want(1000, 0.f);
    for (int r = 0; r < 3; ++r)
      for (size_t i = 0; i < g.size(); ++i) {
        float v = std::cos(0.1f * static_cast<float>(i) + static_cast<float>(r));
        want[i] += v;
        if (r == c.rank()) g[i] = v;
      }
    int8->post(c, 7, g.data(), 1000);
    int8->finish(7, g.data(), 1000);
    for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], want[i], 3 * 0.5 / 127 + 1e-6) << i;
  });
}

TEST(Compression, BadSettings) {
  EXPECT_THROW(make_compressor("topk", 0.0), ValueError);
  EXPECT_THROW(make_compressor("zip", 0.1), ValueError);
  EXPECT_EQ(make_compressor("none", 0.1), nullptr);
}

}  // namespace
}  // namespace kiln::dist
