// Tests of the executor's prepared kernels (kernels.h, PreparedKernel): a compiled graph packs
// each constant Linear weight for the GEMM once. The plain executor is the oracle, bitwise.
#include <gtest/gtest.h>

#include <cstring>

#include "kiln/core/error.h"
#include "kiln/core/rng.h"
#include "kiln/core/thread_pool.h"
#include "kiln/graph/compiled.h"
#include "kiln/graph/executor.h"
#include "kiln/graph/kernels.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::graph {
namespace {

void expect_bitwise(const std::vector<Tensor>& got, const std::vector<Tensor>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t k = 0; k < got.size(); ++k) {
    ASSERT_EQ(got[k].shape(), want[k].shape()) << what;
    Tensor a = contiguous_raw(got[k]), b = contiguous_raw(want[k]);
    EXPECT_EQ(0, std::memcmp(a.data<float>(), b.data<float>(), static_cast<size_t>(a.numel()) * sizeof(float)))
        << what << " output " << k;
  }
}

// x (N, T, 40) -> linear(W1 (96, 40), b1) -> linear_act(W2 (40, 96), gelu_tanh, residual x);
// a third linear reads a weight that is a graph input (not prepared) and a 2-d (N, 40) head.
void build(Graph& g) {
  Generator gen(3);
  SymShape xs{Dim::named("N"), Dim::fixed(5), Dim::fixed(40)};
  Value* x = g.add_input("x", DType::f32, xs);
  Value* w3 = g.add_input("w3", DType::f32, fixed_shape({40, 40}));
  Value* h = g.add_op("linear", {x, g.add_constant("w1", randn({96, 40}, gen)), g.add_constant("b1", randn({96}, gen))},
                      {}, DType::f32);
  Value* y = g.add_op("linear_act", {h, g.add_constant("w2", randn({40, 96}, gen)), nullptr, x},
                      {{"activation", std::string("gelu_tanh")}}, DType::f32);
  g.mark_output(y);
  g.mark_output(g.add_op("linear", {y, w3}, {}, DType::f32));
}

TEST(PreparedKernels, PackedWeightsGiveThePlainExecutorsBits) {
  Graph g;
  build(g);
  Executor plain(g), prepared(g, /*prepare_constants=*/true);
  Generator gen(9);
  for (int threads : {1, 2})
    for (int64_t n : {1, 3, 30}) {  // 5, 15 and 150 rows: small-M, packed and several row blocks
      set_num_threads(threads);
      std::vector<Tensor> in{randn({n, 5, 40}, gen), randn({40, 40}, gen)};
      const std::string what = "threads " + std::to_string(threads) + " batch " + std::to_string(n);
      expect_bitwise(prepared.run(in), plain.run(in), what);
      expect_bitwise(prepared.run(in), plain.run(in), what + " (second run)");
    }
  set_num_threads(2);
}

// A 3x3 conv2d with a constant weight: the Winograd transform is prepared once (with each
// position's packed GEMM operand for the channel-lane layout of small batches); with and without
// ReLU and a fused 2x2 max pool, batch 9 (image lanes), 1 and 3 (channel lanes), 1 and 2 threads,
// the prepared kernel gives the plain executor's bits. Below 4 images the plain executor would
// choose im2col, so its oracle there is the same images inside a batch of 4 (image-lane Winograd,
// whose values the channel-lane layout reproduces bitwise). A 5x5 conv is not prepared.
TEST(PreparedKernels, WinogradWeightsPreparedOnceGiveThePlainExecutorsBits) {
  for (int variant = 0; variant < 4; ++variant) {
    Graph g;
    Generator gen(5);
    Value* x = g.add_input("x", DType::f32, {Dim::named("N"), Dim::fixed(16), Dim::fixed(13), Dim::fixed(12)});
    std::map<std::string, Attr, std::less<>> attrs{{"pads", std::vector<int64_t>{1, 1, 1, 1}}};
    if (variant & 1) attrs["activation"] = std::string("relu");
    if (variant & 2) {
      attrs["pool"] = std::string("max");
      attrs["pool_kernel_shape"] = std::vector<int64_t>{2, 2};
      attrs["pool_strides"] = std::vector<int64_t>{2, 2};
    }
    Value* w = g.add_constant("w", randn({24, 16, 3, 3}, gen));
    Value* c = g.add_op("conv2d", {x, w, g.add_constant("b", randn({24}, gen))}, attrs, DType::f32);
    g.mark_output(g.add_op("conv2d", {c, g.add_constant("w5", randn({8, 24, 5, 5}, gen))}, {}, DType::f32));
    g.mark_output(c);
    Executor plain(g), prepared(g, /*prepare_constants=*/true);
    for (int threads : {1, 2})
      for (int64_t n : {1, 3, 9}) {
        set_num_threads(threads);
        std::vector<Tensor> in{randn({n, 16, 13, 12}, gen)};
        const std::string what = "variant " + std::to_string(variant) + " threads " + std::to_string(threads) +
                                 " batch " + std::to_string(n);
        std::vector<Tensor> want;
        if (n >= 4) {
          want = plain.run(in);
        } else {
          for (const Tensor& t : plain.run({ops::cat({in[0], randn({4 - n, 16, 13, 12}, gen)}, 0)}))
            want.push_back(ops::slice(t, 0, 0, n));
        }
        expect_bitwise(prepared.run(in), want, what);
      }
  }
  set_num_threads(2);
}

TEST(PreparedKernels, OnlyConstantF32WeightsArePrepared) {
  Graph g;
  build(g);
  const PreparedKernel* pk = kernel_table().find_prepared("linear");
  ASSERT_NE(pk, nullptr);
  const auto& nodes = g.nodes();
  EXPECT_NE(pk->prepare(*nodes[0]), nullptr);  // constant weight
  EXPECT_EQ(pk->prepare(*nodes[2]), nullptr);  // the weight is a graph input
  Graph g64;
  Value* x = g64.add_input("x", DType::f64, fixed_shape({2, 3}));
  g64.mark_output(g64.add_op("linear", {x, g64.add_constant("w", Tensor::zeros({4, 3}, DType::f64))}, {}, DType::f64));
  EXPECT_EQ(pk->prepare(*g64.nodes()[0]), nullptr);
}

// A prepared kernel given inputs that do not fit its packed weight falls back to the plain
// kernel, so the error is the usual one naming the op and shapes.
TEST(PreparedKernels, MismatchedInputsGetThePlainKernelsError) {
  Graph g;
  build(g);
  const Node& lin = *g.nodes()[0];
  const PreparedKernel* pk = kernel_table().find_prepared("linear");
  PreparedState st = pk->prepare(lin);
  ASSERT_NE(st, nullptr);
  Generator gen(1);
  std::vector<Tensor> bad{randn({2, 41}, gen), lin.input(1)->constant, lin.input(2)->constant};
  try {
    pk->run(lin, bad, st.get());
    FAIL() << "expected an error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("linear: input [2, 41] does not match weight [96, 40]"), std::string::npos)
        << e.what();
  }
}

TEST(PreparedKernels, CompiledGraphsUseThem) {
  Graph ref, g;
  build(ref);
  build(g);
  Compiled compiled(std::move(g));
  Generator gen(4);
  std::vector<Tensor> in{randn({7, 5, 40}, gen), randn({40, 40}, gen)};
  expect_bitwise(compiled.run(in), Executor(ref).run(in), "compiled");
}

}  // namespace
}  // namespace kiln::graph
