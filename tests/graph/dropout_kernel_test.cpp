// The graph's training-mode dropout (ONNX Dropout with training_mode): its random stream is the
// one ONNX's reference implementation draws (np.random.seed(seed); np.random.uniform(0, 1, shape)),
// checked against NumPy's well-known first draws for seed 0.
#include <gtest/gtest.h>

#include "kiln/core/error.h"
#include "kiln/graph/executor.h"

namespace kiln::graph {
namespace {

Graph dropout_graph(std::optional<int64_t> seed, int outputs, double ratio, bool training) {
  Graph g;
  Value* x = g.add_input("x", DType::f32, fixed_shape({2, 5}));
  Value* r = g.add_constant("ratio", Tensor::scalar(static_cast<float>(ratio)));
  Value* t = g.add_constant("training", Tensor::from_vector<bool>({training}, {}));
  std::map<std::string, Attr, std::less<>> attrs;
  if (seed) attrs["seed"] = *seed;
  std::vector<Value*> outs{g.add_value("y", DType::f32, fixed_shape({2, 5}))};
  if (outputs == 2) outs.push_back(g.add_value("mask", DType::b8, fixed_shape({2, 5})));
  g.add_node("dropout", {x, r, t}, outs, attrs);
  for (Value* v : outs) g.mark_output(v);
  return g;
}

TEST(DropoutKernel, SeededStreamIsNumpysLegacyUniform) {
  // np.random.seed(0); np.random.uniform(0, 1, 10):
  const double u[10] = {0.5488135039273248, 0.7151893663724195, 0.6027633760716439, 0.5448831829968969,
                        0.4236547993389047, 0.6458941130666561, 0.4375872112626925, 0.8917730007820798,
                        0.9636627605010293, 0.3834415188257777};
  const double ratio = 0.5;
  Graph g = dropout_graph(0, 2, ratio, true);
  std::vector<float> xs{1, -2, 3, -4, 5, -6, 7, -8, 9, -10};
  std::vector<Tensor> out = Executor(g).run({Tensor::from_vector<float>(xs, {2, 5})});
  std::vector<float> y = out[0].to_vector<float>();
  std::vector<bool> mask;
  for (double m : out[1].to_vector<double>()) mask.push_back(m != 0);
  for (int i = 0; i < 10; ++i) {
    const bool keep = u[i] >= ratio;
    EXPECT_EQ(mask[static_cast<size_t>(i)], keep) << i;
    EXPECT_EQ(y[static_cast<size_t>(i)], keep ? xs[static_cast<size_t>(i)] * 2.0f : 0.0f) << i;
  }
  // The same seed drops the same elements on every run (the reference reseeds each call).
  EXPECT_EQ(Executor(g).run({Tensor::from_vector<float>(xs, {2, 5})})[1].to_vector<double>(),
            out[1].to_vector<double>());
}

TEST(DropoutKernel, InferenceZeroRatioAndBadRatio) {
  std::vector<float> xs{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  Tensor x = Tensor::from_vector<float>(xs, {2, 5});
  for (auto [ratio, training] : {std::pair{0.5, false}, std::pair{0.0, true}}) {
    std::vector<Tensor> out = Executor(dropout_graph(3, 2, ratio, training)).run({x});
    EXPECT_EQ(out[0].to_vector<float>(), xs);
    EXPECT_EQ(out[1].to_vector<double>(), std::vector<double>(10, 1.0));
  }
  // Unseeded: a fresh stream, still the right scale and a plausible fraction kept.
  std::vector<float> y = Executor(dropout_graph(std::nullopt, 1, 0.25, true)).run({x})[0].to_vector<float>();
  const float scale = static_cast<float>(1.0 / 0.75);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_TRUE(y[i] == 0.0f || y[i] == xs[i] * scale) << y[i];
  EXPECT_THROW(Executor(dropout_graph(1, 1, 1.0, true)).run({x}), ValueError);
}

}  // namespace
}  // namespace kiln::graph
