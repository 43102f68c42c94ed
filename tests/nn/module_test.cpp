// Module bookkeeping: dotted names in registration order, state dicts, strict loading errors,
// train/eval, zero_grad; and the initialisers' ranges and statistics.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/core/error.h"
#include "kiln/nn/nn.h"

using namespace kiln;
using namespace kiln::nn;

namespace {

// A module with a parameter, a buffer and two children, one of them nested.
class Leaf : public Module {
 public:
  explicit Leaf(int64_t n) {
    w = register_parameter("w", Tensor::full({n}, 2.0));
    count = register_buffer("count", Tensor::zeros({}, DType::i64));
  }
  Tensor forward(const Tensor& x) override { return x * w; }
  Tensor w, count;
};

class Net : public Module {
 public:
  explicit Net(Generator& gen, int64_t hidden = 3) {
    fc1 = register_module("fc1", std::make_shared<Linear>(4, hidden, gen));
    scale = register_parameter("scale", Tensor::ones({1}));
    inner = register_module("inner", std::make_shared<Sequential>());
    inner->add(std::make_shared<ReLU>());
    leaf = inner->add(std::make_shared<Leaf>(hidden));
    fc2 = register_module("fc2", std::make_shared<Linear>(hidden, 2, gen));
  }
  Tensor forward(const Tensor& x) override { return fc2->forward(inner->forward(fc1->forward(x))) * scale; }
  std::shared_ptr<Linear> fc1, fc2;
  std::shared_ptr<Sequential> inner;
  std::shared_ptr<Leaf> leaf;
  Tensor scale;
};

std::vector<std::string> names(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::vector<std::string> out;
  for (auto& [n, t] : v) out.push_back(n);
  return out;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Module, NamesAreDottedInRegistrationOrder) {
  Generator gen(1);
  Net net(gen);
  EXPECT_EQ(names(net.named_parameters()),
            (std::vector<std::string>{"scale", "fc1.weight", "fc1.bias", "inner.1.w", "fc2.weight", "fc2.bias"}));
  EXPECT_EQ(names(net.named_buffers()), (std::vector<std::string>{"inner.1.count"}));
  EXPECT_EQ(net.num_parameters(), 1 + 12 + 3 + 3 + 6 + 2);
  for (auto& p : net.parameters()) EXPECT_TRUE(p.requires_grad());
  EXPECT_EQ(net.state_dict().size(), 7u);
  EXPECT_EQ(net.named_children().size(), 3u);
}

TEST(Module, SharedTensorsAreListedOnce) {
  class Tied : public Module {
   public:
    Tied() {
      a = register_module("a", std::make_shared<Leaf>(2));
      register_parameter("alias", a->w);  // same tensor under a second name
    }
    Tensor forward(const Tensor& x) override { return x; }
    std::shared_ptr<Leaf> a;
  } tied;
  EXPECT_EQ(names(tied.named_parameters()), (std::vector<std::string>{"alias"}));
  EXPECT_EQ(tied.num_parameters(), 2);
}

TEST(Module, RejectsDuplicateNames) {
  class Dup : public Module {
   public:
    Dup() {
      register_parameter("x", Tensor::ones({1}));
      register_buffer("x", Tensor::ones({1}));
    }
    Tensor forward(const Tensor& x) override { return x; }
  };
  EXPECT_THROW(Dup(), ValueError);
}

TEST(Module, StateDictRoundTripCopiesIntoExistingTensors) {
  Generator g1(1), g2(2);
  Net a(g1), b(g2);
  Tensor b_fc1 = b.fc1->weight();
  uint64_t version = b_fc1.version();
  EXPECT_NE(a.fc1->weight().to_vector<float>(), b_fc1.to_vector<float>());
  a.leaf->count.data<int64_t>()[0] = 42;
  b.load_state_dict(a.state_dict());
  // Same tensor objects (the module's handles stay valid), now holding a's values.
  EXPECT_TRUE(b.fc1->weight().same(b_fc1));
  EXPECT_GT(b_fc1.version(), version);
  for (auto& [name, t] : a.state_dict()) EXPECT_EQ(t.to_vector<double>(), b.state_dict().at(name).to_vector<double>()) << name;
  EXPECT_EQ(b.leaf->count.to_vector<int64_t>()[0], 42);
  // The state dict shares memory with the module.
  StateDict sd = a.state_dict();
  EXPECT_EQ(sd.at("fc2.bias").storage(), a.fc2->bias().storage());
  EXPECT_FALSE(sd.at("fc2.bias").requires_grad());
}

TEST(Module, StrictLoadNamesTheBadKey) {
  Generator gen(1);
  Net net(gen);
  StateDict good = net.state_dict();

  StateDict missing = good;
  missing.erase("fc2.weight");
  EXPECT_EQ(error_of([&] { net.load_state_dict(missing); }), "load_state_dict: missing key 'fc2.weight'");

  StateDict extra = good;
  extra["fc3.weight"] = Tensor::zeros({1});
  EXPECT_EQ(error_of([&] { net.load_state_dict(extra); }), "load_state_dict: unexpected key 'fc3.weight'");

  Generator gen2(1);
  Net wide(gen2, 5);
  EXPECT_EQ(error_of([&] { net.load_state_dict(wide.state_dict()); }),
            "load_state_dict: shape mismatch for 'fc1.weight': checkpoint [5, 4], model [3, 4]");

  StateDict wrong_dtype = good;
  wrong_dtype["scale"] = Tensor::ones({1}, DType::f64);
  EXPECT_THROW(net.load_state_dict(wrong_dtype), TypeError);

  // A failed load changes nothing; a non-strict load takes what matches.
  std::vector<float> before = net.fc1->weight().to_vector<float>();
  StateDict partial = wide.state_dict();
  partial.erase("fc1.weight");
  partial.erase("fc1.bias");
  partial.erase("fc2.weight");
  partial.erase("inner.1.w");
  EXPECT_THROW(net.load_state_dict(partial), ValueError);
  EXPECT_EQ(net.fc1->weight().to_vector<float>(), before);
  StateDict loose;
  loose["fc2.bias"] = Tensor::from_vector<float>({7, 8});
  loose["nonsense"] = Tensor::zeros({3});
  net.load_state_dict(loose, /*strict=*/false);
  EXPECT_EQ(net.fc2->bias().to_vector<float>(), (std::vector<float>{7, 8}));
  EXPECT_EQ(net.fc1->weight().to_vector<float>(), before);
}

TEST(Module, TrainEvalIsRecursiveAndZeroGradClears) {
  Generator gen(1);
  Net net(gen);
  EXPECT_TRUE(net.leaf->is_training());
  net.eval();
  EXPECT_FALSE(net.is_training());
  EXPECT_FALSE(net.leaf->is_training());
  EXPECT_FALSE(net.inner->is_training());
  net.train();
  EXPECT_TRUE(net.leaf->is_training());
  for (auto& p : net.parameters()) p.set_grad(Tensor::ones(p.shape()));
  net.zero_grad();
  for (auto& p : net.parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(Sequential, NamesChildrenByIndexAndChains) {
  Sequential seq;
  seq.add(std::make_shared<Leaf>(2));
  seq.add(std::make_shared<ReLU>());
  seq.add(std::make_shared<Leaf>(2));
  EXPECT_EQ(names(seq.named_parameters()), (std::vector<std::string>{"0.w", "2.w"}));
  EXPECT_EQ(seq.size(), 3u);
  EXPECT_EQ(seq[1]->name(), "ReLU");
  Tensor y = seq(Tensor::from_vector<float>({1, -1}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{4, 0}));  // relu(2x) * 2
  EXPECT_THROW(seq[3], IndexError);
}

TEST(Init, KaimingXavierRangesAndMoments) {
  Generator gen(5);
  Tensor w = Tensor::empty({200, 300});
  init::kaiming_uniform_(w, gen, std::sqrt(5.0));  // Linear's default: U(-1/sqrt(300), 1/sqrt(300))
  double bound = 1.0 / std::sqrt(300.0), sq = 0, mx = 0;
  for (float v : w.to_vector<float>()) {
    mx = std::max(mx, static_cast<double>(std::abs(v)));
    sq += static_cast<double>(v) * v;
  }
  EXPECT_LE(mx, bound);
  EXPECT_GT(mx, 0.99 * bound);
  EXPECT_NEAR(sq / w.numel(), bound * bound / 3.0, 0.02 * bound * bound / 3.0);

  Tensor c = Tensor::empty({64, 16, 3, 3});  // fan_in 144, fan_out 576
  EXPECT_EQ(init::fans(c), (std::pair<int64_t, int64_t>{144, 576}));
  init::kaiming_normal_(c, gen, 0.0, init::FanMode::fan_out, init::Nonlinearity::relu);
  sq = 0;
  for (float v : c.to_vector<float>()) sq += static_cast<double>(v) * v;
  EXPECT_NEAR(std::sqrt(sq / c.numel()), std::sqrt(2.0 / 576.0), 0.03 * std::sqrt(2.0 / 576.0));

  Tensor x = Tensor::empty({100, 200});
  init::xavier_uniform_(x, gen);
  double xb = std::sqrt(6.0 / 300.0);
  for (float v : x.to_vector<float>()) ASSERT_LE(std::abs(v), xb);
  init::xavier_normal_(x, gen, 2.0);
  sq = 0;
  for (float v : x.to_vector<float>()) sq += static_cast<double>(v) * v;
  EXPECT_NEAR(std::sqrt(sq / x.numel()), 2.0 * std::sqrt(2.0 / 300.0), 0.03 * 2.0 * std::sqrt(2.0 / 300.0));

  init::ones_(x);
  EXPECT_EQ(x.to_vector<float>()[123], 1.0f);
  init::zeros_(x);
  EXPECT_EQ(x.to_vector<float>()[7], 0.0f);
  EXPECT_DOUBLE_EQ(init::calculate_gain(init::Nonlinearity::tanh), 5.0 / 3.0);
}

TEST(Init, SameSeedSameWeightsAndRefusesNothingUnderAutograd) {
  Generator a(9), b(9);
  Linear la(10, 5, a), lb(10, 5, b);
  EXPECT_EQ(la.weight().to_vector<float>(), lb.weight().to_vector<float>());
  EXPECT_EQ(la.bias().to_vector<float>(), lb.bias().to_vector<float>());
  // Parameters require grad; initialisers still write into them (under NoGradGuard).
  Tensor w = la.weight();
  init::normal_(w, a, 0.0, 0.02);
  EXPECT_NE(la.weight().to_vector<float>(), lb.weight().to_vector<float>());
}
