// Core rules checked against hand-worked answers: broadcasting, promotion, dim wrapping, the
// strided walker, dtype conversion of every type, and the thread pool's coverage and errors.
#include <gtest/gtest.h>

#include <atomic>
#include <numeric>

#include "kiln/core/strided_loop.h"
#include "kiln/core/tensor.h"
#include "kiln/core/thread_pool.h"

using namespace kiln;

TEST(Shape, BroadcastingFollowsNumpy) {
  EXPECT_EQ(broadcast_shapes({8, 1, 6, 1}, {7, 1, 5}, "t"), (Shape{8, 7, 6, 5}));
  EXPECT_EQ(broadcast_shapes({5, 4}, {1}, "t"), (Shape{5, 4}));
  EXPECT_EQ(broadcast_shapes({}, {3}, "t"), (Shape{3}));
  try {
    broadcast_shapes({2, 3}, {4, 3}, "add");
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("add: shapes [2, 3] and [4, 3] cannot be broadcast"), std::string::npos)
        << e.what();
  }
}

TEST(Shape, WrapDim) {
  EXPECT_EQ(wrap_dim(-1, 3, "t"), 2);
  EXPECT_EQ(wrap_dim(0, 3, "t"), 0);
  EXPECT_THROW(wrap_dim(3, 3, "t"), IndexError);
  EXPECT_THROW(wrap_dim(-4, 3, "t"), IndexError);
  EXPECT_EQ(contiguous_strides({2, 3, 4}), (Strides{12, 4, 1}));
}

TEST(DType, PromotionTable) {
  EXPECT_EQ(promote_types(DType::i64, DType::f32), DType::f32);
  EXPECT_EQ(promote_types(DType::f32, DType::f64), DType::f64);
  EXPECT_EQ(promote_types(DType::u8, DType::i8), DType::i32);
  EXPECT_EQ(promote_types(DType::b8, DType::u8), DType::u8);
  EXPECT_EQ(promote_types(DType::f16, DType::bf16), DType::f32);
  EXPECT_EQ(promote_types(DType::i32, DType::f16), DType::f16);
  EXPECT_EQ(dtype_from_safetensors("BF16"), DType::bf16);
  EXPECT_THROW(dtype_from_safetensors("F8_E4M3"), TypeError);
  EXPECT_EQ(element_size(DType::i64), 8u);
}

TEST(DType, EveryTypeConvertsThroughF64) {
  Tensor src = Tensor::from_vector<double>({0.0, 1.0, 2.0, 100.0, 3.5});
  for (DType t : {DType::f32, DType::f16, DType::bf16, DType::i8, DType::u8, DType::i32, DType::i64}) {
    auto back = to_dtype_raw(to_dtype_raw(src, t), DType::f64).to_vector<double>();
    double expect_last = is_floating(t) ? 3.5 : 3.0;  // integers truncate toward zero
    EXPECT_EQ(back, (std::vector<double>{0, 1, 2, 100, expect_last})) << dtype_name(t);
  }
  auto b = to_dtype_raw(src, DType::b8).to_vector<int64_t>();
  EXPECT_EQ(b, (std::vector<int64_t>{0, 1, 1, 1, 1}));
}

TEST(StridedLayout, MergesContiguousDimsAndWalksTransposes) {
  StridedLayout<1> flat({2, 3, 4}, {Strides{12, 4, 1}});
  EXPECT_EQ(flat.shape, (Shape{24}));
  // A transposed (3, 2) view of a (2, 3) buffer: element order 0 3 1 4 2 5.
  StridedLayout<1> tr({3, 2}, {Strides{1, 3}});
  std::vector<int64_t> seen;
  tr.for_each_run(0, 6, [&](const auto& off, const auto& st, int64_t n) {
    for (int64_t i = 0; i < n; ++i) seen.push_back(off[0] + i * st[0]);
  });
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 3, 1, 4, 2, 5}));
  // Starting mid-way gives the tail of the same order.
  seen.clear();
  tr.for_each_run(3, 6, [&](const auto& off, const auto& st, int64_t n) {
    for (int64_t i = 0; i < n; ++i) seen.push_back(off[0] + i * st[0]);
  });
  EXPECT_EQ(seen, (std::vector<int64_t>{4, 2, 5}));
}

TEST(ThreadPool, CoversRangeOnceAndPropagatesErrors) {
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    std::vector<std::atomic<int>> hits(100000);
    parallel_for(0, 100000, 1000, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) hits[i]++;
    });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    EXPECT_THROW(parallel_for(0, 100000, 10, [](int64_t, int64_t hi) {
                   if (hi == 100000) throw ValueError("boom");
                 }),
                 ValueError);
  }
  set_num_threads(2);
  EXPECT_THROW(set_num_threads(0), ValueError);
}

TEST(Tensor, ItemAndRequiresGradRules) {
  EXPECT_EQ(Tensor::scalar(2.5).item(), 2.5);
  EXPECT_THROW(Tensor::zeros({2}).item(), ValueError);
  Tensor i = Tensor::zeros({2}, DType::i64);
  EXPECT_THROW(i.set_requires_grad(true), TypeError);
  EXPECT_THROW(Tensor().shape(), ValueError);
}
