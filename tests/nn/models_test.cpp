// The reference models: exact parameter counts (computed here by hand), output shapes, seeding,
// gradients reaching every parameter, the tied gpt_char head, and sampling.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/autograd/engine.h"
#include "kiln/core/error.h"
#include "kiln/nn/nn.h"
#include "kiln/ops/ops.h"

using namespace kiln;
using namespace kiln::nn;

namespace {

ModelSpec spec(const std::string& name) {
  ModelSpec s;
  s.name = name;
  if (name == "gpt_char") s.vocab_size = 65;
  return s;
}

// Backward of a random projection of the output; every parameter must get a finite gradient
// that is not identically zero.
void expect_grads_everywhere(Module& model, const Tensor& input, uint64_t seed) {
  Generator gen(seed);
  Tensor out = model(input);
  Tensor loss = ops::sum(out * randn(out.shape(), gen));
  autograd::backward(loss);
  for (auto& [name, p] : model.named_parameters()) {
    Tensor g = p.grad();
    ASSERT_TRUE(g.defined()) << name << " got no gradient";
    ASSERT_EQ(g.shape(), p.shape()) << name;
    bool nonzero = false;
    for (double v : g.to_vector<double>()) {
      ASSERT_TRUE(std::isfinite(v)) << name;
      nonzero = nonzero || v != 0;
    }
    EXPECT_TRUE(nonzero) << name << " has an all-zero gradient";
  }
}

}  // namespace

TEST(Models, NamesAndUnknownModel) {
  EXPECT_EQ(model_names(), (std::vector<std::string>{"mlp", "cnn", "resnet_small", "gpt_char"}));
  try {
    make_model(spec("vgg"), 0);
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("mlp, cnn, resnet_small, gpt_char"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_model(ModelSpec{.name = "gpt_char"}, 0), ValueError);  // vocab_size unset
}

TEST(Models, ParameterCountsByHand) {
  // mlp: 784*256+256 + 256*128+128 + 128*10+10
  EXPECT_EQ(make_model(spec("mlp"), 0)->num_parameters(), 235146);
  // cnn: 1*32*9+32 + 32*64*9+64 + 1600*128+128 + 128*10+10
  EXPECT_EQ(make_model(spec("cnn"), 0)->num_parameters(), 225034);
  // resnet_small: bias-free convs, BN weight+bias per channel, 1x1 shortcuts in layers 2 and 3.
  int64_t resnet = 1 * 32 * 9 + 2 * 32                                      // conv1, bn1
                   + 2 * (32 * 32 * 9) + 2 * (2 * 32)                       // layer1
                   + 32 * 64 * 9 + 64 * 64 * 9 + 32 * 64 + 3 * (2 * 64)     // layer2
                   + 64 * 128 * 9 + 128 * 128 * 9 + 64 * 128 + 3 * (2 * 128)  // layer3
                   + 128 * 10 + 10;                                           // fc
  EXPECT_EQ(resnet, 308074);
  EXPECT_EQ(make_model(spec("resnet_small"), 0)->num_parameters(), resnet);
  // gpt_char (V = 65, C = 128, context 128, 4 blocks, d_mlp 512); the head is the token embedding.
  const int64_t V = 65, C = 128, L = 128, M = 512;
  int64_t block = 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + 2 * C + (C * M + M) + (M * C + C);
  int64_t gpt = V * C + L * C + 4 * block + 2 * C;
  EXPECT_EQ(gpt, 818048);
  EXPECT_EQ(make_model(spec("gpt_char"), 0)->num_parameters(), gpt);
}

TEST(Models, SeedDeterminesWeights) {
  auto a = make_model(spec("cnn"), 5), b = make_model(spec("cnn"), 5), c = make_model(spec("cnn"), 6);
  auto sa = a->state_dict(), sb = b->state_dict(), sc = c->state_dict();
  EXPECT_EQ(sa.at("7.weight").to_vector<float>(), sb.at("7.weight").to_vector<float>());
  EXPECT_NE(sa.at("7.weight").to_vector<float>(), sc.at("7.weight").to_vector<float>());
}

TEST(Models, ImageModelsShapesAndGradients) {
  Generator gen(3);
  Tensor images = randn({2, 1, 28, 28}, gen);
  for (std::string name : {"mlp", "cnn", "resnet_small"}) {
    SCOPED_TRACE(name);
    auto model = make_model(spec(name), 1);
    EXPECT_EQ((*model)(images).shape(), (Shape{2, 10}));
    expect_grads_everywhere(*model, images, 4);
  }
}

TEST(Models, ResnetBatchNormTrainEval) {
  auto model = make_model(spec("resnet_small"), 1);
  Generator gen(5);
  Tensor images = randn({4, 1, 28, 28}, gen);
  auto buffers = model->named_buffers();
  ASSERT_EQ(buffers.front().first, "bn1.running_mean");
  Tensor train_out = (*model)(images);
  EXPECT_NE(buffers.front().second.to_vector<float>(), std::vector<float>(32, 0.0f));  // stats moved
  model->eval();
  std::vector<float> mean_after = buffers.front().second.to_vector<float>();
  Tensor eval_out = (*model)(images);
  EXPECT_EQ(buffers.front().second.to_vector<float>(), mean_after);  // eval leaves them alone
  EXPECT_NE(eval_out.to_vector<float>(), train_out.to_vector<float>());
  // In eval mode each image's output is independent of the rest of the batch.
  Tensor one = (*model)(ops::slice(images, 0, 0, 1));
  auto a = one.to_vector<float>(), b = eval_out.to_vector<float>();
  for (int k = 0; k < 10; ++k) EXPECT_NEAR(a[k], b[k], 1e-4);
}

TEST(Models, GptCharShapesTiedHeadAndGradients) {
  auto model = make_model(spec("gpt_char"), 1);
  auto params = model->named_parameters();
  EXPECT_EQ(params.front().first, "tok_emb.weight");
  int count = 0;
  for (auto& [name, p] : params) count += name.find("emb.weight") != std::string::npos;
  EXPECT_EQ(count, 2);  // tok_emb and pos_emb only: no separate head weight
  for (auto& [name, p] : params) {
    auto v = p.to_vector<double>();
    double sq = 0;
    for (double e : v) sq += e * e;
    double rms = std::sqrt(sq / static_cast<double>(v.size()));
    if (name.find("ln") != std::string::npos) continue;
    if (name.find(".bias") != std::string::npos) {
      EXPECT_EQ(rms, 0.0) << name;
    } else if (name.find("proj.weight") != std::string::npos) {
      EXPECT_NEAR(rms, 0.02 / std::sqrt(8.0), 0.003) << name;
    } else {
      EXPECT_NEAR(rms, 0.02, 0.002) << name;
    }
  }
  Tensor idx = Tensor::from_vector<int64_t>({1, 5, 9, 64, 0, 3, 2, 7, 7, 7}, {2, 5});
  Tensor logits = (*model)(idx);
  EXPECT_EQ(logits.shape(), (Shape{2, 5, 65}));
  expect_grads_everywhere(*model, idx, 6);
  // Token 50 is not in the input, so its embedding row gets gradient only through the tied head.
  auto g = model->named_parameters().front().second.grad().to_vector<double>();
  double row50 = 0;
  for (int c = 0; c < 128; ++c) row50 += std::abs(g[50 * 128 + c]);
  EXPECT_GT(row50, 0.0);
  EXPECT_THROW((*model)(Tensor::zeros({1, 129}, DType::i64)), ValueError);
}

TEST(Sampling, SampleLogitsDistributionTopKAndGreedy) {
  Generator gen(8);
  std::vector<double> logits = {std::log(0.2), std::log(0.8), -1e9};
  int ones = 0;
  for (int i = 0; i < 20000; ++i) ones += sample_logits(logits, {}, gen) == 1;
  EXPECT_NEAR(ones / 20000.0, 0.8, 0.015);
  std::vector<double> three = {1.0, 3.0, 2.0};
  for (int i = 0; i < 200; ++i) {
    int64_t k2 = sample_logits(three, SampleOptions{.top_k = 2}, gen);
    EXPECT_TRUE(k2 == 1 || k2 == 2);
    EXPECT_EQ(sample_logits(three, SampleOptions{.top_k = 1}, gen), 1);
    EXPECT_EQ(sample_logits(three, SampleOptions{.temperature = 0}, gen), 1);
  }
  // Low temperature sharpens: with T = 0.1 the runner-up (e^-10 as likely) almost never appears.
  int best = 0;
  for (int i = 0; i < 1000; ++i) best += sample_logits(three, SampleOptions{.temperature = 0.1}, gen) == 1;
  EXPECT_GE(best, 995);
}

namespace {
// A fake language model: predicts (last id + 1) mod V, and records the longest input it saw.
class Counter : public Module {
 public:
  Tensor forward(const Tensor& idx) override {
    int64_t T = idx.size(1);
    longest = std::max(longest, T);
    auto ids = idx.to_vector<int64_t>();
    std::vector<float> logits(static_cast<size_t>(T * 7), 0.0f);
    for (int64_t t = 0; t < T; ++t) logits[static_cast<size_t>(t * 7 + (ids[t] + 1) % 7)] = 50.0f;
    return Tensor::from_vector<float>(logits, {1, T, 7});
  }
  int64_t longest = 0;
};
}  // namespace

TEST(Sampling, GenerateCropsContextAndRestoresMode) {
  Counter model;
  Generator gen(1);
  auto ids = generate(model, {3, 4}, 10, gen, SampleOptions{.context = 4});
  EXPECT_EQ(ids, (std::vector<int64_t>{3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0}));
  EXPECT_EQ(model.longest, 4);
  EXPECT_TRUE(model.is_training());

  // With the real model: same seed, same text; ids stay in the vocabulary.
  auto gpt = make_model(spec("gpt_char"), 2);
  Generator g1(9), g2(9);
  auto a = generate(*gpt, {1, 2, 3}, 20, g1, SampleOptions{.temperature = 0.8, .top_k = 10});
  auto b = generate(*gpt, {1, 2, 3}, 20, g2, SampleOptions{.temperature = 0.8, .top_k = 10});
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), 23u);
  for (int64_t id : a) EXPECT_TRUE(id >= 0 && id < 65);
}
