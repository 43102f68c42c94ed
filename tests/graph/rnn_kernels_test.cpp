// Tests for the recurrent graph kernels (graph/kernels_rnn.cpp over ops/rnn_ops.h) against a
// double-precision reference written here straight from the ONNX formulas: one batch row at a
// time, one time step at a time, dot products in plain loops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "kiln/graph/kernels.h"
#include "kiln/ops/rnn_ops.h"

namespace kiln::graph {
namespace {

// ---------------------------------------------------------------- the reference

struct Act {
  std::string name;
  double alpha = 0, beta = 0;
};

double act(const Act& a, double x) {
  const std::string& n = a.name;
  if (n == "Sigmoid") return 1.0 / (1.0 + std::exp(-x));
  if (n == "Tanh") return std::tanh(x);
  if (n == "Relu") return x > 0 ? x : 0.0;
  if (n == "Affine") return a.alpha * x + a.beta;
  if (n == "LeakyRelu") return x >= 0 ? x : a.alpha * x;
  if (n == "ThresholdedRelu") return x > a.alpha ? x : 0.0;
  if (n == "ScaledTanh") return a.alpha * std::tanh(a.beta * x);
  if (n == "HardSigmoid") return std::clamp(a.alpha * x + a.beta, 0.0, 1.0);
  if (n == "Elu") return x >= 0 ? x : a.alpha * (std::exp(x) - 1.0);
  if (n == "Softsign") return x / (1.0 + std::fabs(x));
  if (n == "Softplus") return std::log(1.0 + std::exp(x));
  ADD_FAILURE() << "reference has no activation " << n;
  return 0;
}

// One problem in ONNX layout 0; every vector flat row-major, optional ones empty when absent.
struct Problem {
  std::string kind;  // "rnn", "gru", "lstm"
  int64_t T = 3, B = 2, I = 3, H = 4, D = 1;
  std::string direction = "forward";
  std::vector<double> x, w, r, b, h0, c0, p;  // (T,B,I) (D,GH,I) (D,GH,H) (D,2GH) (D,B,H) (D,B,H) (D,3H)
  std::vector<int64_t> lens;                  // (B) or empty
  std::vector<Act> acts;                      // per direction, already resolved (names and alpha/beta)
  double clip = 0;                            // 0: none
  bool lbr = false, input_forget = false;
  int64_t gates() const { return kind == "rnn" ? 1 : kind == "gru" ? 3 : 4; }
};

struct Result {
  std::vector<double> y, y_h, y_c;  // (T,D,B,H) (D,B,H) (D,B,H)
};

Result reference(const Problem& pb) {
  const int64_t T = pb.T, B = pb.B, I = pb.I, H = pb.H, D = pb.D, G = pb.gates(), GH = G * H;
  const size_t A = pb.acts.size() / static_cast<size_t>(D);
  Result res{std::vector<double>(static_cast<size_t>(T * D * B * H), 0.0),
             std::vector<double>(static_cast<size_t>(D * B * H)), std::vector<double>(static_cast<size_t>(D * B * H))};
  auto cl = [&](double v) { return pb.clip > 0 ? std::clamp(v, -pb.clip, pb.clip) : v; };
  for (int64_t d = 0; d < D; ++d) {
    const bool reverse = pb.direction == "reverse" || d == 1;
    const Act* a = pb.acts.data() + d * A;
    auto W = [&](int64_t gate, int64_t k, int64_t i) { return pb.w[(d * GH + gate * H + k) * I + i]; };
    auto R = [&](int64_t gate, int64_t k, int64_t j) { return pb.r[(d * GH + gate * H + k) * H + j]; };
    auto Wb = [&](int64_t gate, int64_t k) { return pb.b.empty() ? 0.0 : pb.b[d * 2 * GH + gate * H + k]; };
    auto Rb = [&](int64_t gate, int64_t k) { return pb.b.empty() ? 0.0 : pb.b[d * 2 * GH + GH + gate * H + k]; };
    auto P = [&](int64_t which, int64_t k) { return pb.p.empty() ? 0.0 : pb.p[d * 3 * H + which * H + k]; };
    for (int64_t bi = 0; bi < B; ++bi) {
      std::vector<double> h(H, 0.0), c(H, 0.0);
      for (int64_t k = 0; k < H; ++k) {
        if (!pb.h0.empty()) h[k] = pb.h0[(d * B + bi) * H + k];
        if (!pb.c0.empty()) c[k] = pb.c0[(d * B + bi) * H + k];
      }
      const int64_t len = pb.lens.empty() ? T : pb.lens[bi];
      for (int64_t s = 0; s < len; ++s) {
        const int64_t t = reverse ? len - 1 - s : s;
        const double* x = pb.x.data() + (t * B + bi) * I;
        // xw(gate, k) = x . W[gate, k] + Wb;  hr(v, gate, k) = v . R[gate, k]
        auto xw = [&](int64_t gate, int64_t k) {
          double acc = Wb(gate, k);
          for (int64_t i = 0; i < I; ++i) acc += x[i] * W(gate, k, i);
          return acc;
        };
        auto hr = [&](const std::vector<double>& v, int64_t gate, int64_t k) {
          double acc = 0;
          for (int64_t j = 0; j < H; ++j) acc += v[j] * R(gate, k, j);
          return acc;
        };
        std::vector<double> hn(H), cn(H);
        if (pb.kind == "rnn") {
          for (int64_t k = 0; k < H; ++k) hn[k] = act(a[0], cl(xw(0, k) + hr(h, 0, k) + Rb(0, k)));
        } else if (pb.kind == "gru") {  // gates z, r, h
          std::vector<double> z(H), rg(H), rh(H);
          for (int64_t k = 0; k < H; ++k) {
            z[k] = act(a[0], cl(xw(0, k) + hr(h, 0, k) + Rb(0, k)));
            rg[k] = act(a[0], cl(xw(1, k) + hr(h, 1, k) + Rb(1, k)));
            rh[k] = rg[k] * h[k];
          }
          for (int64_t k = 0; k < H; ++k) {
            double pre = pb.lbr ? xw(2, k) + rg[k] * (hr(h, 2, k) + Rb(2, k)) : xw(2, k) + hr(rh, 2, k) + Rb(2, k);
            hn[k] = (1 - z[k]) * act(a[1], cl(pre)) + z[k] * h[k];
          }
        } else {  // gates i, o, f, c; peepholes i, o, f
          for (int64_t k = 0; k < H; ++k) {
            double i = act(a[0], cl(xw(0, k) + hr(h, 0, k) + Rb(0, k) + P(0, k) * c[k]));
            double f = pb.input_forget ? 1 - i : act(a[0], cl(xw(2, k) + hr(h, 2, k) + Rb(2, k) + P(2, k) * c[k]));
            double g = act(a[1], cl(xw(3, k) + hr(h, 3, k) + Rb(3, k)));
            cn[k] = f * c[k] + i * g;
            double o = act(a[0], cl(xw(1, k) + hr(h, 1, k) + Rb(1, k) + P(1, k) * cn[k]));
            hn[k] = o * act(a[2], cn[k]);
          }
          c = cn;
        }
        h = hn;
        for (int64_t k = 0; k < H; ++k) res.y[((t * D + d) * B + bi) * H + k] = h[k];
      }
      for (int64_t k = 0; k < H; ++k) {
        res.y_h[(d * B + bi) * H + k] = h[k];
        res.y_c[(d * B + bi) * H + k] = c[k];
      }
    }
  }
  return res;
}

// ---------------------------------------------------------------- running the kernel

std::vector<double> random(size_t n, std::mt19937& rng, double scale = 0.5) {
  std::uniform_real_distribution<double> u(-scale, scale);
  std::vector<double> v(n);
  for (double& e : v) e = u(rng);
  return v;
}

Tensor f32(const std::vector<double>& v, const Shape& shape) {
  if (v.empty()) return Tensor();
  std::vector<float> f(v.begin(), v.end());
  return Tensor::from_vector<float>(f, shape);
}

// A problem with random weights; the optional inputs chosen by the caller afterwards.
Problem random_problem(std::string kind, int64_t D, std::mt19937& rng) {
  Problem pb;
  pb.kind = std::move(kind);
  pb.D = D;
  if (D == 2) pb.direction = "bidirectional";
  const int64_t GH = pb.gates() * pb.H;
  pb.x = random(static_cast<size_t>(pb.T * pb.B * pb.I), rng, 1.0);
  pb.w = random(static_cast<size_t>(D * GH * pb.I), rng);
  pb.r = random(static_cast<size_t>(D * GH * pb.H), rng);
  pb.b = random(static_cast<size_t>(D * 2 * GH), rng);
  std::vector<std::string> names = pb.kind == "rnn"   ? std::vector<std::string>{"Tanh"}
                                   : pb.kind == "gru" ? std::vector<std::string>{"Sigmoid", "Tanh"}
                                                      : std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"};
  for (int64_t d = 0; d < D; ++d)
    for (const std::string& n : names) pb.acts.push_back({n});
  return pb;
}

// (T, B, ...) -> (B, T, ...) for X and Y (inner = elements per (t, b) pair); states (D, B, H) -> (B, D, H).
std::vector<double> swap01(const std::vector<double>& v, int64_t n0, int64_t n1, int64_t inner) {
  std::vector<double> out(v.size());
  for (int64_t i = 0; i < n0; ++i)
    for (int64_t j = 0; j < n1; ++j)
      for (int64_t k = 0; k < inner; ++k) out[(j * n0 + i) * inner + k] = v[(i * n1 + j) * inner + k];
  return out;
}

// Runs the graph kernel on `pb` (attributes `attrs` on top of those the problem implies); layout 1
// transposes the inputs going in and the outputs coming back, so results compare in layout 0.
Result run_kernel(const Problem& pb, std::map<std::string, Attr, std::less<>> attrs = {}, bool layout1 = false) {
  const int64_t T = pb.T, B = pb.B, I = pb.I, H = pb.H, D = pb.D, GH = pb.gates() * H;
  Node n;
  n.op = ops::find_op(pb.kind);
  n.name = pb.kind + "_node";
  n.attrs = std::move(attrs);
  n.attrs["hidden_size"] = H;
  n.attrs["direction"] = pb.direction;
  if (pb.clip > 0) n.attrs["clip"] = pb.clip;
  if (pb.lbr) n.attrs["linear_before_reset"] = int64_t{1};
  if (pb.input_forget) n.attrs["input_forget"] = int64_t{1};
  if (layout1) n.attrs["layout"] = int64_t{1};
  const Shape state = layout1 ? Shape{B, D, H} : Shape{D, B, H};
  auto st = [&](const std::vector<double>& v) { return layout1 && !v.empty() ? swap01(v, D, B, H) : v; };
  std::vector<Tensor> in = {layout1 ? f32(swap01(pb.x, T, B, I), {B, T, I}) : f32(pb.x, {T, B, I}),
                            f32(pb.w, {D, GH, I}), f32(pb.r, {D, GH, H}), f32(pb.b, {D, 2 * GH}),
                            pb.lens.empty() ? Tensor() : Tensor::from_vector<int32_t>(
                                                             std::vector<int32_t>(pb.lens.begin(), pb.lens.end())),
                            f32(st(pb.h0), state)};
  if (pb.kind == "lstm") {
    in.push_back(f32(st(pb.c0), state));
    in.push_back(f32(pb.p, {D, 3 * H}));
  }
  std::vector<Tensor> out = kernel_table().find(pb.kind)(n, in);
  EXPECT_EQ(out.size(), pb.kind == "lstm" ? 3u : 2u);
  EXPECT_EQ(out[0].shape(), layout1 ? Shape({B, T, D, H}) : Shape({T, D, B, H}));
  EXPECT_EQ(out[1].shape(), state);
  Result r;
  r.y = out[0].to_vector<double>();
  r.y_h = out[1].to_vector<double>();
  if (pb.kind == "lstm") r.y_c = out[2].to_vector<double>();
  if (layout1) {
    // (B, T, D, H) -> (T, B, D, H) -> (T, D, B, H)
    std::vector<double> tbdh = swap01(r.y, B, T, D * H);
    for (int64_t t = 0; t < T; ++t) {
      auto block = tbdh.begin() + t * B * D * H;
      std::vector<double> dbh = swap01(std::vector<double>(block, block + B * D * H), B, D, H);
      std::copy(dbh.begin(), dbh.end(), r.y.begin() + t * D * B * H);
    }
    r.y_h = swap01(r.y_h, B, D, H);
    if (!r.y_c.empty()) r.y_c = swap01(r.y_c, B, D, H);
  }
  return r;
}

void expect_near(const std::vector<double>& got, const std::vector<double>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 2e-5) << what << " element " << i;
}

void check(const Problem& pb, std::map<std::string, Attr, std::less<>> attrs = {}, bool layout1 = false) {
  Result want = reference(pb), got = run_kernel(pb, std::move(attrs), layout1);
  expect_near(got.y, want.y, "Y");
  expect_near(got.y_h, want.y_h, "Y_h");
  if (pb.kind == "lstm") expect_near(got.y_c, want.y_c, "Y_c");
}

// Optional inputs a problem can carry: initial states, unequal lengths (one of them 0), peepholes.
void add_states_and_lengths(Problem& pb, std::mt19937& rng) {
  pb.B = 3;
  pb.lens = {3, 1, 2};
  pb.x = random(static_cast<size_t>(pb.T * pb.B * pb.I), rng, 1.0);
  pb.h0 = random(static_cast<size_t>(pb.D * pb.B * pb.H), rng);
  if (pb.kind == "lstm") {
    pb.c0 = random(static_cast<size_t>(pb.D * pb.B * pb.H), rng);
    pb.p = random(static_cast<size_t>(pb.D * 3 * pb.H), rng);
  }
}

// ---------------------------------------------------------------- the tests

TEST(RnnKernels, EveryKindMatchesTheReferenceForwardWithDefaults) {
  std::mt19937 rng(1);
  for (const char* kind : {"rnn", "gru", "lstm"}) {
    SCOPED_TRACE(kind);
    Problem pb = random_problem(kind, 1, rng);
    pb.b.clear();
    check(pb);
  }
}

TEST(RnnKernels, ReverseAndBidirectionalWithBiasAndInitialStates) {
  std::mt19937 rng(2);
  for (const char* kind : {"rnn", "gru", "lstm"}) {
    SCOPED_TRACE(kind);
    Problem rev = random_problem(kind, 1, rng);
    rev.direction = "reverse";
    rev.h0 = random(static_cast<size_t>(rev.B * rev.H), rng);
    check(rev);
    Problem bi = random_problem(kind, 2, rng);
    bi.h0 = random(static_cast<size_t>(2 * bi.B * bi.H), rng);
    check(bi);
  }
}

TEST(RnnKernels, UnequalSequenceLengthsZeroTheTailAndFreezeTheState) {
  std::mt19937 rng(3);
  for (const char* kind : {"rnn", "gru", "lstm"})
    for (int64_t D : {1, 2}) {
      SCOPED_TRACE(std::string(kind) + " D=" + std::to_string(D));
      Problem pb = random_problem(kind, D, rng);
      add_states_and_lengths(pb, rng);
      check(pb);
      // Independent of the reference: Y past a sequence's length is exactly zero.
      Result got = run_kernel(pb);
      for (int64_t t = 1; t < pb.T; ++t)
        for (int64_t d = 0; d < D; ++d)
          for (int64_t k = 0; k < pb.H; ++k) EXPECT_EQ(got.y[((t * D + d) * pb.B + 1) * pb.H + k], 0.0);
    }
}

TEST(RnnKernels, ZeroLengthSequenceKeepsItsInitialState) {
  std::mt19937 rng(4);
  Problem pb = random_problem("lstm", 2, rng);
  add_states_and_lengths(pb, rng);
  pb.lens = {2, 0, 3};
  check(pb);
}

TEST(RnnKernels, LstmPeepholesAndInputForget) {
  std::mt19937 rng(5);
  Problem pb = random_problem("lstm", 2, rng);
  add_states_and_lengths(pb, rng);
  check(pb);
  pb.input_forget = true;
  check(pb);
}

TEST(RnnKernels, GruLinearBeforeResetBothWays) {
  std::mt19937 rng(6);
  for (bool lbr : {false, true})
    for (int64_t D : {1, 2}) {
      SCOPED_TRACE(std::string("lbr=") + (lbr ? "1" : "0") + " D=" + std::to_string(D));
      Problem pb = random_problem("gru", D, rng);
      add_states_and_lengths(pb, rng);
      pb.lbr = lbr;
      check(pb);
    }
}

TEST(RnnKernels, ClipBoundsEveryGatePreActivation) {
  std::mt19937 rng(7);
  for (const char* kind : {"rnn", "gru", "lstm"}) {
    SCOPED_TRACE(kind);
    Problem pb = random_problem(kind, 2, rng);
    for (double& v : pb.x) v *= 4;  // drive pre-activations past the clip
    pb.clip = 0.3;
    check(pb);
  }
}

TEST(RnnKernels, BatchFirstLayoutMatchesLayoutZero) {
  std::mt19937 rng(8);
  for (const char* kind : {"rnn", "gru", "lstm"}) {
    SCOPED_TRACE(kind);
    Problem pb = random_problem(kind, 2, rng);
    add_states_and_lengths(pb, rng);
    check(pb, {}, /*layout1=*/true);
  }
}

TEST(RnnKernels, ActivationsWithAlphaAndBetaAreConsumedInOrder) {
  std::mt19937 rng(9);
  // LSTM f=HardSigmoid(a=0.3, b=0.6), g=LeakyRelu(a=0.2), h=ScaledTanh(a=1.5, b=0.7): the alpha list
  // is [0.3, 0.2, 1.5], the beta list [0.6, 0.7]: each function takes the next value it uses.
  Problem pb = random_problem("lstm", 1, rng);
  pb.acts = {{"HardSigmoid", 0.3, 0.6}, {"LeakyRelu", 0.2}, {"ScaledTanh", 1.5, 0.7}};
  check(pb, {{"activations", std::vector<std::string>{"HardSigmoid", "LeakyRelu", "ScaledTanh"}},
             {"activation_alpha", std::vector<double>{0.3, 0.2, 1.5}},
             {"activation_beta", std::vector<double>{0.6, 0.7}}});
  // Bidirectional GRU with different functions per direction, and ONNX defaults where no value is given.
  Problem gru = random_problem("gru", 2, rng);
  // Alphas [0.5, 0.8] go to Affine and Elu; ThresholdedRelu, left without one, uses ONNX's 1.0.
  gru.acts = {{"Affine", 0.5, 0.1}, {"Elu", 0.8}, {"Softsign"}, {"ThresholdedRelu", 1.0}};
  check(gru, {{"activations", std::vector<std::string>{"Affine", "Elu", "Softsign", "ThresholdedRelu"}},
              {"activation_alpha", std::vector<double>{0.5, 0.8}},
              {"activation_beta", std::vector<double>{0.1}}});
  // RNN with Relu / Softplus (one direction each), and names in any case.
  Problem rnn = random_problem("rnn", 2, rng);
  rnn.acts = {{"Relu"}, {"Softplus"}};
  check(rnn, {{"activations", std::vector<std::string>{"relu", "SOFTPLUS"}}});
}

TEST(RnnKernels, LargeBatchSplitAcrossThreadsMatches) {
  // Enough rows that the per-step gate loops run in several parallel_for chunks.
  std::mt19937 rng(12);
  for (const char* kind : {"gru", "lstm"}) {
    SCOPED_TRACE(kind);
    Problem pb = random_problem(kind, 2, rng);
    pb.B = 700;
    pb.x = random(static_cast<size_t>(pb.T * pb.B * pb.I), rng, 1.0);
    pb.lens.resize(static_cast<size_t>(pb.B));
    for (int64_t b = 0; b < pb.B; ++b) pb.lens[b] = b % (pb.T + 1);
    check(pb);
  }
}

TEST(RnnKernels, ThresholdedReluDefaultAlphaIsOne) {
  // ThresholdedRelu with no alpha given uses ONNX's default 1.0: values <= 1 become 0.
  ops::RnnActivation a = ops::rnn_activations(ops::RnnKind::rnn, 1, {"ThresholdedRelu"}).at(0);
  EXPECT_EQ(ops::rnn_activate(a, 0.9f), 0.0f);
  EXPECT_EQ(ops::rnn_activate(a, 1.5f), 1.5f);
}

TEST(RnnKernels, EmptySequenceGivesEmptyYAndInitialState) {
  std::mt19937 rng(10);
  Problem pb = random_problem("gru", 1, rng);
  pb.T = 0;
  pb.x.clear();
  pb.h0 = random(static_cast<size_t>(pb.B * pb.H), rng);
  Node n;
  n.op = ops::find_op("gru");
  n.name = "g";
  std::vector<Tensor> out = kernel_table().find("gru")(
      n, {Tensor::empty({0, pb.B, pb.I}), f32(pb.w, {1, 3 * pb.H, pb.I}), f32(pb.r, {1, 3 * pb.H, pb.H}), Tensor(),
          Tensor(), f32(pb.h0, {1, pb.B, pb.H})});
  EXPECT_EQ(out[0].shape(), Shape({0, 1, pb.B, pb.H}));
  expect_near(out[1].to_vector<double>(), reference(pb).y_h, "Y_h");
}

template <typename F>
void expect_error(F f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(RnnKernels, BadInputsAndAttributesFailClearly) {
  std::mt19937 rng(11);
  Problem pb = random_problem("lstm", 1, rng);
  auto run_with = [&](std::map<std::string, Attr, std::less<>> attrs) { return run_kernel(pb, std::move(attrs)); };
  expect_error([&] { run_with({{"activations", std::vector<std::string>{"Sigmoid", "Gelu", "Tanh"}}}); },
               "unsupported activation 'Gelu'");
  expect_error([&] { run_with({{"activations", std::vector<std::string>{"Sigmoid"}}}); }, "activations must list 3");
  expect_error([&] { run_with({{"layout", int64_t{2}}}); }, "layout must be 0 or 1");
  Problem bad_dir = pb;
  bad_dir.direction = "sideways";
  expect_error([&] { run_kernel(bad_dir); }, "direction must be forward, reverse or bidirectional");
  // f64 inputs: the error names the dtype.
  ops::RnnInputs in;
  in.x = Tensor::zeros({3, 2, 3}, DType::f64);
  in.w = Tensor::zeros({1, 16, 3});
  in.r = Tensor::zeros({1, 16, 4});
  ops::RnnOptions opt;
  opt.kind = ops::RnnKind::lstm;
  expect_error([&] { ops::rnn_forward(in, opt); }, "X must be f32, got f64");
  in.x = Tensor::zeros({3, 2, 3});
  in.sequence_lens = Tensor::from_vector<int32_t>({4, 1});
  expect_error([&] { ops::rnn_forward(in, opt); }, "sequence_lens values must be in [0, 3], got 4");
  in.sequence_lens = Tensor();
  in.w = Tensor::zeros({1, 12, 3});
  expect_error([&] { ops::rnn_forward(in, opt); }, "W must have shape [1, 16, 3]");
}

}  // namespace
}  // namespace kiln::graph
