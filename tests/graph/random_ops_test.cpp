// Tests for graph/numpy_random.h and the bernoulli kernel (graph/kernels_random.cpp): the stream
// against NumPy's documented output for np.random.seed(0), and the draws of ONNX's Bernoulli test
// case reproduced from that stream.
#include "graph/node_kernel_util.h"
#include "kiln/graph/numpy_random.h"

namespace kiln::graph {
namespace {

using namespace testing;

// np.random.seed(0); np.random.rand(10)
const std::vector<double> kSeed0 = {0.5488135039273248, 0.7151893663724195, 0.6027633760716439, 0.5448831829968969,
                                    0.4236547993389047, 0.6458941130666561, 0.4375872112626925, 0.8917730007820798,
                                    0.9636627605010293, 0.3834415188257777};

TEST(NumpyRandom, UniformMatchesNumpySeed0) {
  std::mt19937 g(0);
  for (double want : kSeed0) EXPECT_DOUBLE_EQ(numpy_uniform(g), want);
}

TEST(NumpyRandom, BernoulliDrawsLikeLegacyBinomial) {
  // p <= 0.5: 1 when U > 1 - p; p > 0.5: 1 when U <= p (NumPy flips the probability).
  for (double p : {0.3, 0.5, 0.8}) {
    Node n = make_node("bernoulli", {{"seed", 0.0}, {"dtype", std::string("i64")}});
    Tensor y = run1(n, {Tensor::full({10}, p, DType::f64)});
    EXPECT_EQ(y.dtype(), DType::i64);
    std::vector<int64_t> want;
    for (double u : kSeed0) want.push_back(p <= 0.5 ? u > 1 - p : u <= p);
    EXPECT_EQ(y.to_vector<int64_t>(), want) << "p = " << p;
  }
  // ONNX's test_bernoulli_seed drew x = np.random.uniform(0, 1, 10) (f32) after np.random.seed(0),
  // then np.random.binomial(1, x): its expected output is the next 10 draws of the stream.
  std::mt19937 g(0);
  std::vector<double> x;
  for (int i = 0; i < 10; ++i) x.push_back(static_cast<float>(numpy_uniform(g)));
  std::vector<int> y;
  for (double p : x) y.push_back(numpy_bernoulli(g, p));
  EXPECT_EQ(y, (std::vector<int>{0, 1, 1, 0, 0, 1, 0, 1, 1, 1}));
}

TEST(NumpyRandom, BernoulliEdgesAndErrors) {
  Tensor p = Tensor::from_vector<float>({0, 1, 0, 1});
  Tensor y = run1(make_node("bernoulli"), {p});  // no seed: still exact at 0 and 1; input's dtype
  EXPECT_EQ(y.dtype(), DType::f32);
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{0, 1, 0, 1}));
  // Without a seed two runs differ (1000 fair coins agree with probability 2^-1000).
  Tensor half = Tensor::full({1000}, 0.5, DType::f32);
  EXPECT_NE(run1(make_node("bernoulli"), {half}).to_vector<double>(), run1(make_node("bernoulli"), {half}).to_vector<double>());
  expect_error([] { run1(make_node("bernoulli"), {Tensor::from_vector<float>({0.5f, 1.5f})}); },
               {"bernoulli_node", "1.5", "element 1"});
  expect_error([] { run1(make_node("bernoulli"), {Tensor::from_vector<int64_t>({0, 1})}); }, {"bernoulli_node", "float"});
}

}  // namespace
}  // namespace kiln::graph
