// Edge cases of the reductions and indexing ops that a random-input table does not reach: NaN and
// infinities, ties across reduction chunks, integer and half dtypes, empty dims, and results that
// must be bitwise identical for any thread count.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kiln/autograd/engine.h"
#include "kiln/core/rng.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/ops.h"

using namespace kiln;

namespace {
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Restores the thread count when a test changes it.
struct ThreadsGuard {
  int saved = get_num_threads();
  ~ThreadsGuard() { set_num_threads(saved); }
};
}  // namespace

TEST(ReduceEdges, NanWinsMaxMinAndArgmaxPointsAtTheFirstNan) {
  Tensor x = Tensor::from_vector<float>({1, kNaN, 5, kNaN, 2, 3, 4, 0}, {2, 4});
  auto [v, i] = ops::max(x, 1);
  EXPECT_TRUE(std::isnan(v.to_vector<float>()[0]));
  EXPECT_EQ(v.to_vector<float>()[1], 4.0f);
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  auto [mv, mi] = ops::min(x, 1);
  EXPECT_TRUE(std::isnan(mv.to_vector<float>()[0]));
  EXPECT_EQ(mi.to_vector<int64_t>(), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(ops::argmax(x, 1).to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(std::isnan(ops::amax(x).item()));
  // A long row: the NaN sits in a later chunk and inside the 16-lane body.
  Tensor long_row = Tensor::zeros({1, 70000});
  long_row.data<float>()[50001] = kNaN;
  long_row.data<float>()[3] = 9.0f;
  EXPECT_EQ(ops::argmax(long_row, 1).item(), 50001);
}

TEST(ReduceEdges, LogsumexpHandlesInfinitiesAndNan) {
  Tensor x = Tensor::from_vector<float>({-kInf, -kInf, kInf, 1, kNaN, 1, 1000, 1000}, {4, 2});
  std::vector<float> y = ops::logsumexp(x, {1}).to_vector<float>();
  EXPECT_EQ(y[0], -kInf);
  EXPECT_EQ(y[1], kInf);
  EXPECT_TRUE(std::isnan(y[2]));
  EXPECT_NEAR(y[3], 1000.0f + std::log(2.0f), 1e-4);
  EXPECT_EQ(ops::logsumexp(Tensor::zeros({3, 0}), {1}).to_vector<float>(), std::vector<float>(3, -kInf));
}

TEST(ReduceEdges, FirstMaxWinsAcrossChunks) {
  // Equal maxima in the second and fourth 16384-element chunks of a row: the earlier one wins,
  // and amax's gradient goes to it alone.
  Tensor x = Tensor::zeros({2, 65536}, DType::f64);
  double* p = x.data<double>();
  for (int64_t r = 0; r < 2; ++r) {
    p[r * 65536 + 20000 + r] = 7.0;
    p[r * 65536 + 60000] = 7.0;
    p[r * 65536 + 16384] = 7.0 * r;  // row 1: a third tie at the very start of chunk 1
  }
  EXPECT_EQ(ops::argmax(x, 1).to_vector<int64_t>(), (std::vector<int64_t>{20000, 16384}));
  EXPECT_EQ(ops::min(ops::neg(x), 1).second.to_vector<int64_t>(), (std::vector<int64_t>{20000, 16384}));
  Tensor leaf = x.detach();
  leaf.set_requires_grad(true);
  Tensor m = ops::amax(leaf, {1});
  EXPECT_EQ(m.to_vector<double>(), (std::vector<double>{7.0, 7.0}));
  autograd::backward(ops::sum(m));
  std::vector<double> grad = leaf.grad().to_vector<double>();
  EXPECT_EQ(grad[20000], 1.0);
  EXPECT_EQ(grad[60000], 0.0);
  EXPECT_EQ(grad[65536 + 16384], 1.0);
  EXPECT_EQ(grad[65536 + 20001], 0.0);
  double total = 0;
  for (double v : grad) total += v;
  EXPECT_EQ(total, 2.0);
}

TEST(ReduceEdges, IntegerAndHalfDtypes) {
  Tensor xi = Tensor::from_vector<int32_t>({3, -7, 9, 9, 0, -1}, {2, 3});
  auto [v, i] = ops::max(xi, 1);
  EXPECT_EQ(v.dtype(), DType::i32);
  EXPECT_EQ(v.to_vector<int32_t>(), (std::vector<int32_t>{9, 9}));
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{2, 0}));
  EXPECT_EQ(ops::argmax(Tensor::from_vector<uint8_t>({1, 200, 200, 7}), 0).item(), 1);
  EXPECT_EQ(ops::amax(xi, {0}).to_vector<int32_t>(), (std::vector<int32_t>{9, 0, 9}));
  Tensor h = to_dtype_raw(Tensor::from_vector<float>({0.5f, -2.0f, 3.25f}), DType::f16);
  EXPECT_EQ(ops::max(h, 0).first.dtype(), DType::f16);
  EXPECT_EQ(ops::max(h, 0).first.item(), 3.25);
  EXPECT_EQ(ops::topk(h, 2).first.to_vector<float>(), (std::vector<float>{3.25f, 0.5f}));
  EXPECT_THROW(ops::var(xi), TypeError);
  EXPECT_THROW(ops::argmax(Tensor::zeros({3}, DType::b8), 0), TypeError);
}

TEST(ReduceEdges, EmptyAndDegenerateShapes) {
  EXPECT_THROW(ops::max(Tensor::zeros({3, 0}), 1), ValueError);
  EXPECT_EQ(ops::argmax(Tensor::zeros({0, 5}), 1).shape(), (Shape{0}));
  EXPECT_TRUE(std::isnan(ops::var(Tensor::zeros({0})).item()));
  EXPECT_TRUE(std::isnan(ops::var(Tensor::ones({1})).item()));  // n - 1 = 0, as in PyTorch
  EXPECT_EQ(ops::var(Tensor::ones({1}), {}, /*unbiased=*/false).item(), 0.0);
  Tensor s = Tensor::scalar(4.0);
  EXPECT_EQ(ops::amax(s).item(), 4.0);
  EXPECT_EQ(ops::max(s, 0).first.item(), 4.0);
  EXPECT_EQ(ops::max(s, 0).second.item(), 0.0);
  EXPECT_EQ(ops::sum(s, {0}).item(), 4.0);
  EXPECT_EQ(ops::var(Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2}), {0, 1}, true, true).shape(), (Shape{1, 1}));
}

TEST(ReduceEdges, TopkOrdersNanFirstAndBreaksTiesByIndex) {
  Tensor x = Tensor::from_vector<float>({2, kNaN, 5, 2, 5, -1});
  auto [v, i] = ops::topk(x, 4);
  std::vector<float> vv = v.to_vector<float>();
  EXPECT_TRUE(std::isnan(vv[0]));
  EXPECT_EQ(std::vector<float>(vv.begin() + 1, vv.end()), (std::vector<float>{5, 5, 2}));
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 4, 0}));
  auto [sv, si] = ops::topk(x, 2, 0, /*largest=*/false);
  EXPECT_EQ(sv.to_vector<float>(), (std::vector<float>{-1, 2}));
  EXPECT_EQ(si.to_vector<int64_t>(), (std::vector<int64_t>{5, 0}));
  EXPECT_EQ(ops::topk(x, 0).first.shape(), (Shape{0}));
}

TEST(IndexEdges, MixedDtypesAndIndexTypes) {
  Tensor a = Tensor::from_vector<int64_t>({1, 2}), b = Tensor::from_vector<float>({0.5f});
  Tensor c = ops::cat({a, b}, 0);
  EXPECT_EQ(c.dtype(), DType::f32);
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{1, 2, 0.5f}));
  Tensor data = Tensor::from_vector<int64_t>({10, 11, 12, 13, 14, 15}, {2, 3});
  EXPECT_EQ(ops::index_select(data, 1, Tensor::from_vector<int32_t>({2, 0})).to_vector<int64_t>(),
            (std::vector<int64_t>{12, 10, 15, 13}));
  EXPECT_EQ(ops::gather(data, 0, Tensor::from_vector<int64_t>({1, 0, 1}, {1, 3})).to_vector<int64_t>(),
            (std::vector<int64_t>{13, 11, 15}));
  Tensor acc = ops::scatter_add(Tensor::zeros({3}, DType::i32), 0, Tensor::from_vector<int64_t>({2, 2, 0}),
                                Tensor::from_vector<int32_t>({1, 4, 7}));
  EXPECT_EQ(acc.to_vector<int32_t>(), (std::vector<int32_t>{7, 0, 5}));
  EXPECT_EQ(ops::pad(data, {1, 1}, -1).to_vector<int64_t>(),
            (std::vector<int64_t>{-1, 10, 11, 12, -1, -1, 13, 14, 15, -1}));
  EXPECT_THROW(ops::index_select(data, 0, Tensor::from_vector<int64_t>({2})), IndexError);
  EXPECT_THROW(ops::gather(data, 1, Tensor::from_vector<float>({0.0f}, {1, 1})), TypeError);
}

TEST(Determinism, ReductionsAndScatterAreBitwiseEqualForAnyThreadCount) {
  ThreadsGuard guard;
  Generator g(99);
  Tensor x = randn({4, 100003}, g), big = randn({300001}, g);
  Tensor idx = ops::to(ops::mul(rand({5000, 64}, g), 50.0), DType::i64);
  Tensor src = randn({5000, 64}, g);
  auto run = [&] {
    return std::vector<std::vector<float>>{
        ops::var(x, {1}).to_vector<float>(),          ops::var(big).to_vector<float>(),
        ops::logsumexp(x, {1}).to_vector<float>(),    ops::logsumexp(big, {0}).to_vector<float>(),
        ops::sum(x, {1}).to_vector<float>(),          ops::amax(x, {0}).to_vector<float>(),
        ops::scatter_add(Tensor::zeros({50, 64}), 0, idx, src).to_vector<float>(),
        ops::var(ops::transpose(x, 0, 1), {0}).to_vector<float>(),
    };
  };
  set_num_threads(1);
  auto one = run();
  set_num_threads(2);
  auto two = run();
  set_num_threads(3);
  auto three = run();
  for (size_t k = 0; k < one.size(); ++k) {
    EXPECT_EQ(one[k], two[k]) << "result " << k;
    EXPECT_EQ(one[k], three[k]) << "result " << k;
  }
}
