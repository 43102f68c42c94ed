// Tensor parallelism over real MPI processes (test_dist_mpi under mpirun -np 2, 3, 4): the split
// gpt_char's outputs and gradients against the unsplit model's, computed on every rank.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kiln/autograd/engine.h"
#include "kiln/core/rng.h"
#include "kiln/dist/communicator.h"
#include "kiln/dist/tensor_parallel.h"
#include "kiln/ops/ops.h"

namespace kiln::dist {
namespace {

nn::ModelSpec small_gpt() {
  nn::ModelSpec s;
  s.name = "gpt_char";
  s.vocab_size = 20;
  s.context = 16;
  s.d_model = 32;
  s.n_layers = 2;
  s.n_heads = 4;
  s.d_mlp = 64;
  return s;
}

// The same model on every rank, with nonzero biases (GPT-2 starts them at 0, which would hide a
// bias added once per rank instead of once).
std::shared_ptr<nn::GptChar> model() {
  auto m = std::make_shared<nn::GptChar>(small_gpt(), 3);
  Generator gen(9);
  for (auto& p : m->parameters()) {
    Tensor noise = randn(p.shape(), gen);
    float* d = p.data<float>();
    for (int64_t i = 0; i < p.numel(); ++i) d[i] += 0.05f * noise.data<float>()[i];
  }
  return m;
}

double relative_difference(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    Tensor x = contiguous_raw(a[i]), y = contiguous_raw(b[i]);
    EXPECT_EQ(x.numel(), y.numel()) << "tensor " << i;
    for (int64_t k = 0; k < x.numel(); ++k) {
      double d = double(x.data<float>()[k]) - y.data<float>()[k];
      diff += d * d;
      norm += double(y.data<float>()[k]) * y.data<float>()[k];
    }
  }
  return std::sqrt(diff / norm);
}

Tensor tokens() {
  std::vector<int64_t> ids(3 * 16);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 7 + 3) % 20);
  return Tensor::from_vector(ids, {3, 16});
}

Tensor loss_of(const Tensor& logits) {
  Tensor targets = ops::reshape(ops::slice(ops::reshape(tokens(), {48}), 0, 0, 48), {48});
  return ops::cross_entropy(ops::reshape(logits, {48, 20}), targets);
}

TEST(TensorParallel, OutputsAndGradientsEqualTheUnsplitModel) {
  Communicator& comm = world();
  auto full = model();
  if (4 % comm.size() != 0) {  // 4 heads over 3 ranks
    EXPECT_THROW(TensorParallelGpt(comm, *full), ValueError);
    return;
  }
  auto reference = model();
  TensorParallelGpt tp(comm, *full);
  Tensor out = tp.forward(tokens()), want = reference->forward(tokens());
  EXPECT_LT(relative_difference({out}, {want}), 1e-6);
  autograd::backward(loss_of(out));
  autograd::backward(loss_of(want));

  const int n = comm.size(), r = comm.rank();
  const int64_t C = 32, Cn = C / n, M = 64, Mn = M / n;
  std::vector<Tensor> got, expected;
  auto add = [&](const Tensor& g, const Tensor& e) {
    ASSERT_TRUE(g.defined());
    got.push_back(g);
    expected.push_back(e);
  };
  // Replicated: embeddings, final layer norm.
  add(full->tok_emb()->weight().grad(), reference->tok_emb()->weight().grad());
  add(full->pos_emb()->weight().grad(), reference->pos_emb()->weight().grad());
  add(full->ln_f()->named_parameters()[0].second.grad(), reference->ln_f()->named_parameters()[0].second.grad());
  for (size_t i = 0; i < 2; ++i) {
    auto& tb = tp.block(i);
    auto& fb = dynamic_cast<nn::Block&>(*(*full->blocks())[i]);  // its layer norms are tp's
    auto& rb = dynamic_cast<nn::Block&>(*(*reference->blocks())[i]);
    auto p = [](nn::Module& m, const std::string& key) {
      for (auto& [name, t] : m.named_parameters())
        if (name == key) return t.grad();
      ADD_FAILURE() << "no " << key;
      return Tensor();
    };
    const std::vector<std::pair<int64_t, int64_t>> heads = {
        {r * Cn, (r + 1) * Cn}, {C + r * Cn, C + (r + 1) * Cn}, {2 * C + r * Cn, 2 * C + (r + 1) * Cn}};
    add(p(tb.attn(), "qkv_weight"), take_rows(rb.attn().qkv().weight().grad(), heads));
    add(p(tb.attn(), "qkv_bias"), take_rows(rb.attn().qkv().bias().grad(), heads));
    add(p(tb.attn(), "proj_weight"), ops::slice(rb.attn().proj().weight().grad(), 1, r * Cn, (r + 1) * Cn));
    add(p(tb.attn(), "proj_bias"), rb.attn().proj().bias().grad());
    add(p(tb.mlp(), "fc_weight"), take_rows(rb.mlp().fc().weight().grad(), {{r * Mn, (r + 1) * Mn}}));
    add(p(tb.mlp(), "fc_bias"), take_rows(rb.mlp().fc().bias().grad(), {{r * Mn, (r + 1) * Mn}}));
    add(p(tb.mlp(), "proj_weight"), ops::slice(rb.mlp().proj().weight().grad(), 1, r * Mn, (r + 1) * Mn));
    add(p(tb.mlp(), "proj_bias"), rb.mlp().proj().bias().grad());
    for (size_t k = 0; k < 2; ++k) {
      add(fb.ln1()->named_parameters()[k].second.grad(), rb.ln1()->named_parameters()[k].second.grad());
      add(fb.ln2()->named_parameters()[k].second.grad(), rb.ln2()->named_parameters()[k].second.grad());
    }
  }
  EXPECT_LT(relative_difference(got, expected), 1e-6) << "rank " << r;
}

TEST(TensorParallel, GatherRebuildsTheWholeWeights) {
  Communicator& comm = world();
  if (4 % comm.size() != 0) return;
  auto full = model();
  auto reference = model();
  TensorParallelGpt tp(comm, *full);
  // Scramble the whole model's split weights, then gather the slices back into it.
  for (auto& [name, t] : full->named_parameters())
    if (name.find("attn") != std::string::npos || name.find("mlp") != std::string::npos) {
      std::fill(t.data<float>(), t.data<float>() + t.numel(), 0.f);
    }
  tp.gather_into(*full);
  auto a = full->named_parameters(), b = reference->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(0, std::memcmp(a[i].second.raw_data(), b[i].second.raw_data(), a[i].second.numel() * sizeof(float)))
        << a[i].first;
}

}  // namespace
}  // namespace kiln::dist
