// Tests of fused-kernel code generation (graph/codegen.h): the interpreter (the fused_elementwise
// kernel with codegen forced off) is the oracle for the generated code, on every instruction kind
// and on broadcast, strided and threaded layouts; the on-disk cache, the fallbacks, and golden
// files of the emitted source (KILN_UPDATE_GOLDEN=1 rewrites them). Parts that need a compiler
// skip when there is none.
#include "kiln/graph/codegen.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <utility>

#include "kiln/core/rng.h"
#include "kiln/core/thread_pool.h"
#include "kiln/graph/graph.h"
#include "kiln/graph/kernels.h"
#include "kiln/graph/passes.h"
#include "kiln/ops/cpu/float_kernels.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/inference_extra.h"
#include "kiln/ops/reduce.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::graph {
namespace {

namespace fs = std::filesystem;
using codegen::Mode;

// "t3". (Not "t" + std::to_string(k): GCC 12 warns falsely on literal + temporary string.)
std::string named(const char* prefix, size_t k) {
  std::string s = prefix;
  s += std::to_string(k);
  return s;
}

// A fused_elementwise node holding a program (the form the fusion pass writes), and its parse.
struct Fused {
  Graph g;
  Node* node = nullptr;
  fused::Program prog;
};

std::unique_ptr<Fused> make(const std::vector<std::string>& code, const std::vector<std::string>& outs, int num_inputs,
                            int64_t rank) {
  auto f = std::make_unique<Fused>();
  std::vector<Value*> in, out;
  for (int i = 0; i < num_inputs; ++i) in.push_back(f->g.add_input(named("x", static_cast<size_t>(i)), DType::f32, {}));
  for (size_t j = 0; j < outs.size(); ++j) out.push_back(f->g.add_value({}, DType::f32));
  f->node = f->g.add_node("fused_elementwise", in, out, {{"program", code}, {"outputs", outs}, {"rank", rank}});
  f->prog = fused::parse(*f->node);
  return f;
}

// The same for a reduction program (fused_program.h) over the trailing `axes` of `rank` dims.
std::unique_ptr<Fused> make_reduction(const std::vector<std::string>& code, const std::vector<std::string>& outs,
                                      int num_inputs, int64_t rank, int64_t axes, bool keepdims = true) {
  auto f = std::make_unique<Fused>();
  std::vector<Value*> in, out;
  for (int i = 0; i < num_inputs; ++i) in.push_back(f->g.add_input(named("x", static_cast<size_t>(i)), DType::f32, {}));
  for (size_t j = 0; j < outs.size(); ++j) out.push_back(f->g.add_value({}, DType::f32));
  f->node = f->g.add_node("fused_elementwise", in, out,
                          {{"program", code},
                           {"outputs", outs},
                           {"rank", rank},
                           {"reduce_axes", axes},
                           {"keepdims", int64_t{keepdims ? 1 : 0}}});
  f->prog = fused::parse(*f->node);
  return f;
}

// Sets the codegen mode for a scope, then restores the previous override.
class ScopedMode {
 public:
  explicit ScopedMode(std::optional<Mode> m) { codegen::set_mode_override(m); }
  ~ScopedMode() { codegen::set_mode_override(std::nullopt); }
};

std::vector<Tensor> interpret(const Fused& f, const std::vector<Tensor>& in) {
  codegen::set_mode_override(Mode::off);
  std::vector<Tensor> out = kernel_table().find("fused_elementwise")(*f.node, in);
  codegen::set_mode_override(Mode::on);
  return out;
}

std::vector<Tensor> generated(const Fused& f, const std::vector<Tensor>& in, const Shape& shape) {
  const codegen::FusedFunction* fn = codegen::find_or_compile(f.prog);
  if (!fn) throw std::runtime_error("find_or_compile failed");
  std::vector<Tensor> out;
  for (size_t j = 0; j < f.prog.outputs.size(); ++j) out.push_back(Tensor::empty(shape, DType::f32));
  codegen::run(*fn, in, out);
  return out;
}

uint32_t bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}

// Bitwise equality (every NaN equal to every NaN); returns the first mismatch.
std::string compare_exact(const std::vector<float>& got, const std::vector<float>& want, const std::vector<float>& x) {
  if (got.size() != want.size()) return "sizes differ";
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) && std::isnan(want[i])) continue;
    if (bits(got[i]) != bits(want[i])) {
      std::ostringstream s;
      s.precision(9);
      s << "element " << i << " (x = " << (i < x.size() ? x[i] : 0.f) << "): got " << got[i] << ", want " << want[i];
      return s.str();
    }
  }
  return {};
}

// |got - want| <= 1e-6 * max(|want|, 1), infinities and NaNs matching exactly.
std::string compare_close(const std::vector<float>& got, const std::vector<float>& want) {
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) && std::isnan(want[i])) continue;
    if (!std::isfinite(want[i]) ? got[i] == want[i]
                                : std::abs(got[i] - want[i]) <= 1e-6f * std::max(std::abs(want[i]), 1.f))
      continue;
    std::ostringstream s;
    s.precision(9);
    s << "element " << i << ": got " << got[i] << ", want " << want[i];
    return s.str();
  }
  return {};
}

class Codegen : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_cache_ = std::getenv("KILN_CODEGEN_CACHE") ? std::getenv("KILN_CODEGEN_CACHE") : "";
    saved_cxx_ = std::getenv("KILN_CXX") ? std::getenv("KILN_CXX") : "";
    char tmpl[] = "/tmp/kiln-codegen-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ::setenv("KILN_CODEGEN_CACHE", dir_.c_str(), 1);
    codegen::clear_memory_cache();
    codegen::set_mode_override(Mode::on);
  }
  void TearDown() override {
    codegen::set_mode_override(std::nullopt);
    codegen::clear_memory_cache();
    restore("KILN_CODEGEN_CACHE", saved_cache_);
    restore("KILN_CXX", saved_cxx_);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  static void restore(const char* name, const std::string& v) {
    if (v.empty())
      ::unsetenv(name);
    else
      ::setenv(name, v.c_str(), 1);
  }
  // Compile-dependent tests call this first.
  bool have_compiler() const { return codegen::find_compiler().has_value(); }

  std::string dir_, saved_cache_, saved_cxx_;
};

#define REQUIRE_COMPILER()                                                 \
  if (!have_compiler())                                                    \
    GTEST_SKIP() << "no C++ compiler (KILN_CXX, c++ or g++ on PATH): the " \
                    "generated-code checks need one";

// ---------------------------------------------------------------- every instruction kind

// in0: general values, in1: a second operand, in2: positive values (log, sqrt, pow's base);
// random, then the edge values (zeros, infinities, NaN, subnormals, ties for round, exp's limits).
std::vector<Tensor> op_inputs(int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-4.f, 4.f), p(0.f, 10.f);
  std::vector<float> a(static_cast<size_t>(n)), b(a.size()), c(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = u(rng);
    b[i] = u(rng);
    c[i] = p(rng);
  }
  const float inf = INFINITY, nan = NAN;
  const std::vector<float> edge_a = {0.f,    -0.f, inf,   -inf, nan,  1e-40f, -1e-40f, 88.8f, -104.f, 1e30f,
                                     -1e30f, 0.5f, -0.5f, 2.5f, 3.5f, -2.5f,  0.625f,  -1.f,  1.f,    -9.f};
  const std::vector<float> edge_b = {0.f,  0.f, 2.f,  -inf, 1.f, nan, 0.f,  1.f,  -0.f, inf,
                                     -1.f, 3.f, 0.5f, -2.f, 0.f, 2.f, -3.f, -1.f, 1.f,  0.5f};
  const std::vector<float> edge_c = {0.f, 1e-40f, inf, 1.f, nan, 2.f, 1e-30f, 1e30f, 0.5f, 4.f,
                                     0.f, 1.f,    1.f, 1.f, 1.f, 1.f, 1.f,    1.f,   1.f,  1.f};
  for (size_t i = 0; i < edge_a.size(); ++i) {
    a[i] = edge_a[i];
    b[i] = edge_b[i];
    c[i] = edge_c[i];
  }
  return {Tensor::from_vector(a, {rows, cols}), Tensor::from_vector(b, {rows, cols}),
          Tensor::from_vector(c, {rows, cols})};
}

struct OpCase {
  std::string line;  // the instruction, t<k> filled in
  int input;         // the input its reference applies to (for vm ops)
  int vm = -1;       // UnaryOp of the vectorised approximation it uses, or -1 (exact)
};

std::vector<OpCase> op_cases() {
  using ops::cpu::UnaryOp;
  auto vm = [](UnaryOp op) { return static_cast<int>(op); };
  return {
      {"add in0 in1", 0},
      {"sub in0 in1", 0},
      {"mul in0 in1", 0},
      {"div in0 in1", 0},
      {"pow in2 in1", 2},
      {"maximum in0 in1", 0},
      {"minimum in0 in1", 0},
      {"prelu in0 in1", 0},
      {"neg in0", 0},
      {"abs in0", 0},
      {"exp in0", 0, vm(UnaryOp::exp)},
      {"log in2", 2, vm(UnaryOp::log)},
      {"sqrt in2", 2},
      {"rsqrt in2", 2},
      {"tanh in0", 0, vm(UnaryOp::tanh)},
      {"sigmoid in0", 0, vm(UnaryOp::sigmoid)},
      {"relu in0", 0},
      {"gelu in0", 0, vm(UnaryOp::gelu)},
      {"gelu_tanh in0", 0, vm(UnaryOp::gelu_tanh)},
      {"silu in0", 0, vm(UnaryOp::silu)},
      {"erf in0", 0},
      {"reciprocal in0", 0},
      {"floor in0", 0},
      {"ceil in0", 0},
      {"round in0", 0},
      {"sin in0", 0},
      {"cos in0", 0},
      {"softplus in0", 0},
      {"softsign in0", 0},
      {"hard_swish in0", 0},
      {"sign in0", 0},
      {"leaky_relu in0 #0.00999999978", 0},
      {"elu in0 #1.5", 0},
      {"hard_sigmoid in0 #0.200000003 #0.5", 0},
      {"selu in0 #1.67326319 #1.05070102", 0},
      {"clamp in0 #-1 #2.5", 0},
      // immediates as value operands (pow's exponent must not be folded: powf(x, 2) != x * x)
      {"pow in2 #2", 2},
      {"pow in0 #3", 0},
      {"pow in2 #0.5", 2},
      {"pow in2 #-1", 2},
      {"maximum in0 #nan", 0},
      {"minimum #-0 in0", 0},
      {"add in0 #inf", 0},
      {"mul in0 #-0", 0},
      {"div #1 in1", 0},
      {"clamp in0 #-inf #0", 0},
  };
}

TEST_F(Codegen, EveryInstructionMatchesTheInterpreter) {
  REQUIRE_COMPILER();
  std::vector<OpCase> cases = op_cases();
  std::vector<std::string> code, outs;
  for (size_t k = 0; k < cases.size(); ++k) {
    code.push_back(named("t", k) + " = " + cases[k].line);
    outs.push_back(named("t", k));
  }
  // Chains, and instructions on immediates only (computed at run time, never folded).
  const size_t c0 = code.size();
  code.push_back(named("t", c0) + " = add #1 #0.5");
  code.push_back(named("t", c0 + 1) + " = sin " + named("t", c0));
  code.push_back(named("t", c0 + 2) + " = mul in0 " + named("t", c0 + 1));
  code.push_back(named("t", c0 + 3) + " = erf " + named("t", c0 + 2));
  code.push_back(named("t", c0 + 4) + " = pow #2 #0.333333343");
  for (size_t k = c0; k < code.size(); ++k) outs.push_back(named("t", k));
  auto f = make(code, outs, 3, 2);

  std::vector<Tensor> in = op_inputs(3, 1000);
  std::vector<Tensor> want = interpret(*f, in);
  std::vector<Tensor> got = generated(*f, in, {3, 1000});
  const bool portable = ops::cpu::simd_level() == "portable";
  const auto& ref_kernels = ops::cpu::float_kernels_portable();
  for (size_t k = 0; k < outs.size(); ++k) {
    SCOPED_TRACE(code[k]);
    std::vector<float> g = got[k].to_vector<float>(), w = want[k].to_vector<float>();
    const bool vm = k < cases.size() && cases[k].vm >= 0;
    if (!vm || portable) {
      EXPECT_EQ(compare_exact(g, w, in[0].to_vector<float>()), "");
      continue;
    }
    // The interpreter's vectorised approximations contract into FMA on AVX2/AVX-512 builds;
    // generated code never contracts, so it matches them within 1e-6 and the portable build
    // (which has no FMA) bit for bit.
    EXPECT_EQ(compare_close(g, w), "");
    std::vector<float> x = in[static_cast<size_t>(cases[k].input)].to_vector<float>(), ref(x.size());
    ref_kernels.unary(static_cast<ops::cpu::UnaryOp>(cases[k].vm), ref.data(), x.data(),
                      static_cast<int64_t>(x.size()));
    EXPECT_EQ(compare_exact(g, ref, x), "");
  }
}

// ---------------------------------------------------------------- layouts

Tensor random(const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<float> v(static_cast<size_t>(numel(shape)));
  for (float& x : v) x = u(rng);
  return Tensor::from_vector(v, shape);
}

// A 3-input expression with two outputs, one of them through a vm op (sigmoid): the layouts
// change only which loop runs, so all comparisons are bitwise, against the interpreter run on
// the same layout with the portable kernels' sigmoid.
const std::vector<std::string> kThreeInputCode = {"t0 = mul in0 in1", "t1 = sub t0 in2", "t2 = maximum t1 #0",
                                                  "t3 = div t2 in1", "t4 = add t3 #0.5"};

TEST_F(Codegen, BroadcastStridedAndDegenerateShapesMatchTheInterpreter) {
  REQUIRE_COMPILER();
  auto f = make(kThreeInputCode, {"t4", "t1"}, 3, 4);
  struct Case {
    std::string what;
    std::vector<Tensor> in;
  };
  Tensor wide = random({6, 5}, 9);
  std::vector<Case> cases = {
      {"same shape", {random({2, 3, 4, 5}, 1), random({2, 3, 4, 5}, 2), random({2, 3, 4, 5}, 3)}},
      {"[4,1,5] [3,1] [5]", {random({4, 1, 5}, 1), random({3, 1}, 2), random({5}, 3)}},
      {"NCHW + per-channel [3,1,1] + scalar", {random({2, 3, 4, 5}, 1), random({3, 1, 1}, 2), random({1}, 3)}},
      {"scalars only", {random({1}, 1), random({1, 1}, 2), random({}, 3)}},
      {"scalar x tensor", {random({1}, 1), random({7, 6}, 2), random({1}, 3)}},
      {"rows longer than a block, broadcast along them", {random({2, 3000}, 1), random({2, 1}, 2), random({3000}, 3)}},
      {"transposed view (strided gather)", {ops::transpose(wide, 0, 1), random({5, 6}, 2), random({6}, 3)}},
      {"sliced rows (outer stride)", {ops::slice(random({10, 5}, 4), 0, 0, 10, 2), random({5, 5}, 2), random({5}, 3)}},
      {"all-ones shape", {random({1, 1}, 1), random({1}, 2), random({1, 1, 1}, 3)}},
      {"zero-size", {random({0, 5}, 1), random({5}, 2), random({1}, 3)}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::vector<Tensor> want = interpret(*f, c.in);
    std::vector<Tensor> got = generated(*f, c.in, want[0].shape());
    for (size_t j = 0; j < want.size(); ++j) {
      EXPECT_EQ(got[j].shape(), want[j].shape());
      EXPECT_EQ(compare_exact(got[j].to_vector<float>(), want[j].to_vector<float>(), {}), "");
    }
  }
}

// The ABI called directly, without the runner's merging of dims: size-1 dims, zero strides in
// the middle, a rank-0 call.
TEST_F(Codegen, AbiHandlesUnmergedStrides) {
  REQUIRE_COMPILER();
  auto f = make(kThreeInputCode, {"t4", "t1"}, 3, 4);
  const codegen::FusedFunction* fn = codegen::find_or_compile(f->prog);
  ASSERT_NE(fn, nullptr);
  EXPECT_EQ(fn->num_inputs, 3);
  EXPECT_EQ(fn->num_outputs, 2);
  Tensor a = random({2, 1, 3, 4}, 1), b = random({3, 1}, 2), c = random({4}, 3);
  std::vector<Tensor> want = interpret(*f, {a, b, c});  // (2, 1, 3, 4)
  const int64_t shape[] = {2, 1, 3, 4};
  const int64_t sa[] = {12, 12, 4, 1}, sb[] = {0, 0, 1, 0}, sc[] = {0, 0, 0, 1};
  const float* in[] = {a.data<float>(), b.data<float>(), c.data<float>()};
  const int64_t* st[] = {sa, sb, sc};
  std::vector<float> o0(24), o1(24);
  float* out[] = {o0.data(), o1.data()};
  fn->fn(in, st, out, shape, 4);
  EXPECT_EQ(compare_exact(o0, want[0].to_vector<float>(), {}), "");
  EXPECT_EQ(compare_exact(o1, want[1].to_vector<float>(), {}), "");

  float s0 = 0, s1 = 0;
  float* one[] = {&s0, &s1};
  fn->fn(in, st, one, nullptr, 0);  // rank 0: one element, each input's first
  std::vector<Tensor> w0 = interpret(
      *f, {Tensor::from_vector(std::vector<float>{in[0][0]}, {}), Tensor::from_vector(std::vector<float>{in[1][0]}, {}),
           Tensor::from_vector(std::vector<float>{in[2][0]}, {})});
  EXPECT_EQ(bits(s0), bits(w0[0].to_vector<float>()[0]));
  EXPECT_EQ(bits(s1), bits(w0[1].to_vector<float>()[0]));
}

TEST_F(Codegen, ThreadedRunMatchesTheInterpreter) {
  REQUIRE_COMPILER();
  auto f = make({"t0 = mul in0 in1", "t1 = add t0 in2", "t2 = relu t1", "t3 = mul t2 #0.5"}, {"t3"}, 3, 2);
  const int threads = get_num_threads();
  set_num_threads(2);
  for (const auto& in : {std::vector<Tensor>{random({64, 20000}, 1), random({64, 20000}, 2), random({64, 20000}, 3)},
                         std::vector<Tensor>{random({64, 20000}, 1), random({20000}, 2), random({64, 1}, 3)}}) {
    std::vector<Tensor> want = interpret(*f, in);
    std::vector<Tensor> got = generated(*f, in, want[0].shape());
    EXPECT_EQ(compare_exact(got[0].to_vector<float>(), want[0].to_vector<float>(), {}), "");
  }
  set_num_threads(threads);
}

// What the fusion pass really writes: build a graph, fuse it into one node, and run that node
// both ways on its graph inputs and constants.
TEST_F(Codegen, ProgramsFromTheFusionPassMatchTheInterpreter) {
  REQUIRE_COMPILER();
  auto scalar = [](Graph& g, double v) { return g.add_constant({}, Tensor::scalar(v)); };
  auto chain = [&](Graph& g) {
    Generator gen(5);
    const SymShape s = fixed_shape({3, 37, 41});
    Value* y = g.add_op("add", {g.add_input("x", DType::f32, s), g.add_input("b", DType::f32, fixed_shape({41}))}, {},
                        DType::f32, s);
    y = g.add_op("mul", {y, g.add_constant("s", randn({37, 1}, gen))}, {}, DType::f32, s);
    y = g.add_op("sub", {scalar(g, 0.25), y}, {}, DType::f32, s);
    y = g.add_op("div", {y, scalar(g, 3.0)}, {}, DType::f32, s);
    g.mark_output(g.add_op("relu", {g.add_op("neg", {y}, {}, DType::f32, s)}, {}, DType::f32, s));
  };
  auto transcendental = [&](Graph& g) {
    const SymShape s = fixed_shape({2, 2000});
    Value* y = g.add_input("x", DType::f32, s);
    for (const char* name : {"exp", "tanh", "sigmoid", "erf", "gelu", "silu", "sin", "softplus", "abs", "sqrt", "log"})
      y = g.add_op(name, {y}, {}, DType::f32, s);
    y = g.add_op("leaky_relu", {y}, {{"alpha", 0.1}}, DType::f32, s);
    y = g.add_op("clamp", {y, scalar(g, -0.5)}, {}, DType::f32, s);
    y = g.add_op("gelu", {y}, {{"approximate", std::string("tanh")}}, DType::f32, s);
    g.mark_output(g.add_op("pow", {y, scalar(g, 2.0)}, {}, DType::f32, s));
  };
  // The chain has no vectorised approximation: bitwise.
  for (const auto& [build, exact] : {std::pair{std::function<void(Graph&)>(chain), true},
                                     std::pair{std::function<void(Graph&)>(transcendental), false}}) {
    Graph g;
    build(g);
    fuse_elementwise(g);
    ASSERT_EQ(g.nodes().size(), 1u);
    const Node& node = *g.nodes()[0];
    ASSERT_EQ(node.op_name(), "fused_elementwise");
    Generator gen(11);
    std::map<const Value*, Tensor> graph_inputs;
    for (const Value* v : g.inputs()) graph_inputs[v] = randn(*concrete_shape(*v->shape), gen);
    std::vector<Tensor> in;
    for (const Value* v : node.inputs) in.push_back(v->is_constant() ? v->constant : graph_inputs.at(v));
    codegen::set_mode_override(Mode::off);
    std::vector<Tensor> want = kernel_table().find("fused_elementwise")(node, in);
    codegen::set_mode_override(Mode::on);
    std::vector<Tensor> got = {Tensor::empty(want[0].shape(), DType::f32)};
    ASSERT_TRUE(codegen::run_generated(fused::parse(node), in, got));
    if (exact)
      EXPECT_EQ(compare_exact(got[0].to_vector<float>(), want[0].to_vector<float>(), {}), "");
    else
      EXPECT_EQ(compare_close(got[0].to_vector<float>(), want[0].to_vector<float>()), "");
  }
}

// ---------------------------------------------------------------- reduction programs

// Generated reduction code against the interpreter: the fused_elementwise kernel run both ways
// (run_generated is its hook), so shapes, keepdims and the checks before it are the kernel's.
std::vector<Tensor> run_kernel(const Fused& f, const std::vector<Tensor>& in, Mode mode) {
  codegen::set_mode_override(mode);
  std::vector<Tensor> out = kernel_table().find("fused_elementwise")(*f.node, in);
  codegen::set_mode_override(Mode::on);
  return out;
}

struct ReductionProgram {
  std::string name;
  std::vector<std::string> code, outputs;
  int num_inputs;
  bool exact;  // no vectorised approximation (exp, log, ...): bitwise
};

std::vector<ReductionProgram> reduction_programs() {
  return {
      // RMS norm's scale: rsqrt(mean(x * x) + eps)
      {"rms_inv",
       {"t0 = mul in0 in0", "t1 = reduce_mean t0", "t2 = add t1 #9.99999975e-06", "t3 = rsqrt t2"},
       {"t3"},
       1,
       true},
      // the max over a row of x + bias
      {"row_max", {"t0 = add in0 in1", "t1 = reduce_max t0"}, {"t1"}, 2, true},
      // log-sum-exp's tail: log(sum(exp(x - m))), and the sum itself as a second output
      {"sum_exp_log", {"t0 = sub in0 in1", "t1 = exp t0", "t2 = reduce_sum t1", "t3 = log t2"}, {"t3", "t2"}, 2,
       false},
  };
}

// More kinds and forms: min, prod, an input reduced directly, an instruction on immediates only
// before and after the reduction, an epilogue with two outputs.
std::vector<ReductionProgram> more_reduction_programs() {
  return {
      {"min_abs_diff", {"t0 = sub in0 in1", "t1 = abs t0", "t2 = reduce_min t1", "t3 = neg t2"}, {"t3"}, 2, true},
      {"prod_near_one", {"t0 = mul in0 #0.00999999978", "t1 = add t0 in1", "t2 = reduce_prod t1"}, {"t2"}, 2, true},
      {"sum_of_input", {"t0 = reduce_sum in0", "t1 = sqrt t0", "t2 = mul t0 #0.5"}, {"t1", "t2", "t0"}, 1, true},
      {"immediates_only",
       {"t0 = add #1 #0.5", "t1 = mul in0 t0", "t2 = reduce_mean t1", "t3 = sin #2", "t4 = add t2 t3"},
       {"t4"},
       1,
       true},
  };
}

// Layouts of the inputs: (rows..., len) element shapes, broadcast and strided inputs. in1 of
// programs with two inputs is a per-row value, a per-column value, or full size.
struct ReductionLayout {
  std::string name;
  std::function<std::vector<Tensor>(int num_inputs)> inputs;
  int64_t rank, axes;
};

std::vector<ReductionLayout> reduction_layouts(int64_t len) {
  auto pick = [](std::vector<Tensor> t, int n) {
    t.resize(static_cast<size_t>(n));
    return t;
  };
  const auto L = static_cast<uint32_t>(len);
  return {
      {"contiguous, per-row in1", [=](int n) { return pick({random({5, len}, 1 + L), random({5, 1}, 2)}, n); }, 2, 1},
      {"per-column in1", [=](int n) { return pick({random({3, 4, len}, 3 + L), random({len}, 4)}, n); }, 3, 1},
      {"transposed x (strided rows)",
       [=](int n) { return pick({ops::transpose(random({len, 6}, 5 + L), 0, 1), random({6, len}, 6)}, n); }, 2, 1},
      {"two reduced dims, in1 broadcast inside the row (gathered)",
       [=](int n) { return pick({random({2, 3, len}, 7 + L), random({len}, 8)}, n); }, 3, 2},
      {"every dim reduced: one row", [=](int n) { return pick({random({2, len}, 9 + L), random({2, 1}, 10)}, n); }, 2,
       2},
      {"no dim reduced: one element per row",
       [=](int n) { return pick({random({4, len}, 11 + L), random({4, len}, 12)}, n); }, 2, 0},
  };
}

void check_reduction_program(const ReductionProgram& p, const std::vector<int64_t>& lengths) {
  for (int64_t len : lengths)
    for (const ReductionLayout& layout : reduction_layouts(len))
      for (bool keep : {true, false}) {
        SCOPED_TRACE(p.name + ", len " + std::to_string(len) + ", " + layout.name + (keep ? "" : ", no keepdims"));
        auto f = make_reduction(p.code, p.outputs, p.num_inputs, layout.rank, layout.axes, keep);
        std::vector<Tensor> in = layout.inputs(p.num_inputs);
        if (p.name == "prod_near_one") in[1] = ops::add(ops::mul(in[1], Tensor::scalar(0.001)), Tensor::scalar(1.0));
        const codegen::Stats s0 = codegen::stats();
        std::vector<Tensor> want = run_kernel(*f, in, Mode::off);
        std::vector<Tensor> got = run_kernel(*f, in, Mode::on);
        const codegen::Stats s1 = codegen::stats();  // the generated code ran: found, not failed
        EXPECT_GT(s1.compiles + s1.disk_hits + s1.memory_hits, s0.compiles + s0.disk_hits + s0.memory_hits);
        EXPECT_EQ(s1.failures, s0.failures);
        ASSERT_EQ(got.size(), want.size());
        for (size_t j = 0; j < want.size(); ++j) {
          ASSERT_EQ(got[j].shape(), want[j].shape());
          if (p.exact)
            EXPECT_EQ(compare_exact(got[j].to_vector<float>(), want[j].to_vector<float>(), {}), "") << "output " << j;
          else
            EXPECT_EQ(compare_close(got[j].to_vector<float>(), want[j].to_vector<float>()), "") << "output " << j;
        }
      }
}

TEST_F(Codegen, ReductionProgramsMatchTheInterpreterOnAwkwardRows) {
  REQUIRE_COMPILER();
  for (const ReductionProgram& p : reduction_programs()) check_reduction_program(p, {1, 7, 33, 257, 1000, 2500});
  for (const ReductionProgram& p : more_reduction_programs()) check_reduction_program(p, {1, 33, 1000});
}

// The interpreter against a naive loop in the eager op's order (so also the generated code):
// 16 f32 lanes per block of 1024 folded in f64 for sum and mean, the first extreme and the first
// NaN for max and min, a plain f32 product; and the same values as the unfused ops.
TEST_F(Codegen, ReductionsAccumulateInTheEagerOrder) {
  const int64_t len = 2500;  // three blocks, the last one ragged
  Tensor x = random({3, len}, 21);
  auto naive_sum = [&](const std::vector<float>& v, int64_t row) {
    double total = 0;
    for (int64_t base = 0; base < len; base += 1024) {
      float lanes[16] = {};
      const int64_t n = std::min<int64_t>(1024, len - base);
      for (int64_t i = 0; i < n; ++i) lanes[i % 16] += v[static_cast<size_t>(row * len + base + i)];
      double block = 0;
      for (float l : lanes) block += l;
      total += block;
    }
    return total;
  };
  std::vector<float> xv = x.to_vector<float>();
  for (Mode mode : {Mode::off, Mode::on}) {
    if (mode == Mode::on && !have_compiler()) continue;
    SCOPED_TRACE(mode == Mode::on ? "generated" : "interpreted");
    auto sum = make_reduction({"t0 = reduce_sum in0"}, {"t0"}, 1, 2, 1);
    auto mean = make_reduction({"t0 = reduce_mean in0"}, {"t0"}, 1, 2, 1);
    std::vector<float> s = run_kernel(*sum, {x}, mode)[0].to_vector<float>();
    std::vector<float> m = run_kernel(*mean, {x}, mode)[0].to_vector<float>();
    std::vector<float> eager_s = ops::sum(x, {1}, true).to_vector<float>();
    std::vector<float> eager_m = ops::mean(x, {1}, true).to_vector<float>();
    for (int64_t r = 0; r < 3; ++r) {
      EXPECT_EQ(s[static_cast<size_t>(r)], static_cast<float>(naive_sum(xv, r)));
      EXPECT_EQ(m[static_cast<size_t>(r)], static_cast<float>(naive_sum(xv, r)) / static_cast<float>(len));
      EXPECT_EQ(bits(s[static_cast<size_t>(r)]), bits(eager_s[static_cast<size_t>(r)]));
      EXPECT_EQ(bits(m[static_cast<size_t>(r)]), bits(eager_m[static_cast<size_t>(r)]));
    }
    // max/min: ties keep the first (-0 vs 0), NaN anywhere wins (the first one), infinities.
    const float nan = NAN, inf = INFINITY;
    Tensor e = Tensor::from_vector<float>({-0.f, 0.f, -1.f, 3.f,   //
                                           0.f, -0.f, 2.f, -5.f,   //
                                           1.f, nan, 7.f, -nan,    //
                                           -inf, inf, -inf, 2.f},
                                          {4, 4});
    auto mx = make_reduction({"t0 = reduce_max in0"}, {"t0"}, 1, 2, 1);
    auto mn = make_reduction({"t0 = reduce_min in0"}, {"t0"}, 1, 2, 1);
    auto pr = make_reduction({"t0 = reduce_prod in0"}, {"t0"}, 1, 2, 1);
    std::vector<float> vmax = run_kernel(*mx, {e}, mode)[0].to_vector<float>();
    std::vector<float> vmin = run_kernel(*mn, {e}, mode)[0].to_vector<float>();
    std::vector<float> vprod = run_kernel(*pr, {e}, mode)[0].to_vector<float>();
    std::vector<float> eager_max = ops::amax(e, {1}, true).to_vector<float>();
    std::vector<float> eager_min = ops::neg(ops::amax(ops::neg(e), {1}, true)).to_vector<float>();
    EXPECT_EQ(compare_exact(vmax, eager_max, {}), "");
    EXPECT_EQ(compare_exact(vmin, eager_min, {}), "");
    EXPECT_EQ(bits(vmax[0]), bits(3.f));
    EXPECT_EQ(bits(vmin[1]), bits(-5.f));
    EXPECT_TRUE(std::isnan(vmax[2]) && std::isnan(vmin[2]));
    EXPECT_EQ(vmax[3], inf);
    EXPECT_EQ(vmin[3], -inf);
    EXPECT_EQ(compare_exact(vprod, ops::prod(e, {1}, true).to_vector<float>(), {}), "");
    // Empty rows: a sum of nothing is 0, a product 1; no rows: empty outputs; mean of nothing throws.
    Tensor empty_rows = Tensor::empty({3, 0}, DType::f32);
    EXPECT_EQ(run_kernel(*sum, {empty_rows}, mode)[0].to_vector<float>(), (std::vector<float>{0.f, 0.f, 0.f}));
    EXPECT_EQ(run_kernel(*pr, {empty_rows}, mode)[0].to_vector<float>(), (std::vector<float>{1.f, 1.f, 1.f}));
    EXPECT_EQ(run_kernel(*sum, {Tensor::empty({0, 5}, DType::f32)}, mode)[0].shape(), (Shape{0, 1}));
    EXPECT_THROW(run_kernel(*mean, {empty_rows}, mode), ValueError);
  }
}

// Threads split the rows; results do not depend on how many there are.
TEST_F(Codegen, ReductionResultsDoNotDependOnTheThreadCount) {
  REQUIRE_COMPILER();
  auto f = make_reduction({"t0 = mul in0 in1", "t1 = reduce_sum t0"}, {"t1"}, 2, 3, 1);
  std::vector<Tensor> in = {random({64, 30, 700}, 31), random({700}, 32)};
  const int saved = get_num_threads();
  set_num_threads(1);
  std::vector<float> one = run_kernel(*f, in, Mode::on)[0].to_vector<float>();
  set_num_threads(std::max(saved, 4));
  std::vector<float> many = run_kernel(*f, in, Mode::on)[0].to_vector<float>();
  std::vector<float> interp = run_kernel(*f, in, Mode::off)[0].to_vector<float>();
  set_num_threads(saved);
  EXPECT_EQ(compare_exact(many, one, {}), "");
  EXPECT_EQ(compare_exact(interp, one, {}), "");
}

// ---------------------------------------------------------------- cache and fallbacks

TEST_F(Codegen, SecondUseHitsTheCacheWithoutCompiling) {
  REQUIRE_COMPILER();
  auto f = make({"t0 = add in0 in1", "t1 = relu t0"}, {"t1"}, 2, 2);
  const codegen::Stats s0 = codegen::stats();
  const codegen::FusedFunction* a = codegen::find_or_compile(f->prog);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(codegen::stats().compiles, s0.compiles + 1);
  EXPECT_EQ(codegen::find_or_compile(f->prog), a);  // memory
  EXPECT_EQ(codegen::stats().compiles, s0.compiles + 1);
  EXPECT_EQ(codegen::stats().memory_hits, s0.memory_hits + 1);

  // A new process (here: memory forgotten) loads the cached object from disk.
  codegen::clear_memory_cache();
  const codegen::FusedFunction* b = codegen::find_or_compile(f->prog);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(codegen::stats().compiles, s0.compiles + 1);
  EXPECT_EQ(codegen::stats().disk_hits, s0.disk_hits + 1);
  EXPECT_EQ(b->so_path, a->so_path);
  EXPECT_EQ(fs::path(b->so_path).parent_path(), fs::path(dir_));
  std::vector<Tensor> in = {random({3, 4}, 1), random({4}, 2)};
  std::vector<Tensor> out = {Tensor::empty({3, 4}, DType::f32)};
  ASSERT_TRUE(codegen::run_generated(f->prog, in, out));
  EXPECT_EQ(compare_exact(out[0].to_vector<float>(), interpret(*f, in)[0].to_vector<float>(), {}), "");
  // Only finished files in the cache: the source and the object, no temporaries.
  for (const auto& e : fs::directory_iterator(dir_)) {
    std::string ext = e.path().extension().string();
    EXPECT_TRUE(ext == ".so" || ext == ".cc") << e.path();
  }
  // The same program under another rank is the same function; another program compiles.
  auto g = make({"t0 = add in0 in1", "t1 = relu t0"}, {"t1"}, 2, 5);
  EXPECT_EQ(codegen::find_or_compile(g->prog), b);
  auto h = make({"t0 = add in0 in1", "t1 = relu t0", "t2 = neg t1"}, {"t2"}, 2, 2);
  EXPECT_NE(codegen::find_or_compile(h->prog), nullptr);
  EXPECT_EQ(codegen::stats().compiles, s0.compiles + 2);
}

TEST_F(Codegen, MissingCompilerFallsBackToTheInterpreterWithOneWarning) {
  ::setenv("KILN_CXX", "/nonexistent/kiln-no-such-c++", 1);
  EXPECT_FALSE(codegen::find_compiler().has_value());
  auto f = make({"t0 = add in0 in1", "t1 = relu t0"}, {"t1"}, 2, 2);
  std::vector<Tensor> in = {random({3, 4}, 1), random({4}, 2)};
  std::vector<Tensor> out = {Tensor::empty({3, 4}, DType::f32)};
  const codegen::Stats s0 = codegen::stats();
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(codegen::find_or_compile(f->prog), nullptr);
  EXPECT_FALSE(codegen::run_generated(f->prog, in, out));
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_NE(err.find("kiln: codegen: KILN_CXX='/nonexistent/kiln-no-such-c++'"), std::string::npos) << err;
  EXPECT_EQ(codegen::stats().compiles, s0.compiles);
  EXPECT_EQ(codegen::stats().failures, s0.failures + 1);
  // The graph kernel still computes the node (in the interpreter).
  std::vector<float> y = kernel_table().find("fused_elementwise")(*f->node, in)[0].to_vector<float>();
  std::vector<float> a = in[0].to_vector<float>(), b = in[1].to_vector<float>();
  for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(y[i], std::max(a[i] + b[i % 4], 0.f));
}

TEST_F(Codegen, FailedCompileFallsBackToTheInterpreter) {
  if (::access("/bin/false", X_OK) != 0) GTEST_SKIP() << "no /bin/false to stand in for a failing compiler";
  ::setenv("KILN_CXX", "/bin/false", 1);
  auto f = make({"t0 = add in0 in1"}, {"t0"}, 2, 1);
  const codegen::Stats s0 = codegen::stats();
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(codegen::find_or_compile(f->prog), nullptr);
  EXPECT_EQ(codegen::find_or_compile(f->prog), nullptr);  // remembered: no second attempt
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("failed (see "), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(codegen::stats().compiles, s0.compiles + 1);
  for (const auto& e : fs::directory_iterator(dir_)) EXPECT_NE(e.path().extension(), ".so") << e.path();
}

TEST_F(Codegen, ModeOffNeverCompiles) {
  ScopedMode off(Mode::off);
  auto f = make({"t0 = add in0 in1"}, {"t0"}, 2, 1);
  const codegen::Stats s0 = codegen::stats();
  EXPECT_EQ(codegen::find_or_compile(f->prog), nullptr);
  std::vector<Tensor> out = {Tensor::empty({4}, DType::f32)};
  EXPECT_FALSE(codegen::run_generated(f->prog, {random({4}, 1), random({4}, 2)}, out));
  EXPECT_EQ(codegen::stats().compiles, s0.compiles);
  EXPECT_EQ(codegen::stats().failures, s0.failures);
}

// ---------------------------------------------------------------- emitted source

struct GoldenProgram {
  std::string name;
  std::vector<std::string> code, outputs;
  int num_inputs;
};

std::vector<GoldenProgram> golden_programs() {
  return {
      {"bias_relu", {"t0 = add in0 in1", "t1 = relu t0"}, {"t1"}, 2},
      // ONNX's GELU decomposition: x * 0.5 * (1 + erf(x / sqrt(2)))
      {"gelu_erf",
       {"t0 = div in0 #1.41421354", "t1 = erf t0", "t2 = add t1 #1", "t3 = mul in0 t2", "t4 = mul t3 #0.5"},
       {"t4"},
       1},
      // LayerNorm's tail: (x - mean) * rsqrt(var + eps) * gamma + beta
      {"layer_norm_tail",
       {"t0 = sub in0 in1", "t1 = add in2 #9.99999975e-06", "t2 = rsqrt t1", "t3 = mul t0 t2", "t4 = mul t3 in3",
        "t5 = add t4 in4"},
       {"t5"},
       5},
      // three broadcast inputs, two outputs, a vectorised approximation (sigmoid -> exp helpers)
      {"broadcast_swish",
       {"t0 = mul in0 in1", "t1 = sub t0 in2", "t2 = sigmoid t1", "t3 = mul t1 t2"},
       {"t3", "t1"},
       3},
      // immediates the compiler must not fold (pow's exponent, -0, an instruction on immediates
      // only), hoisted before the loop
      {"hidden_immediates",
       {"t0 = pow in0 #2", "t1 = maximum t0 #-0", "t2 = add #1 #0.5", "t3 = sin t2", "t4 = mul t1 t3",
        "t5 = clamp t4 #-inf #6"},
       {"t5"},
       1},
  };
}

TEST_F(Codegen, EmittedSourceMatchesGoldenFiles) {
  const bool update = std::getenv("KILN_UPDATE_GOLDEN") && std::string(std::getenv("KILN_UPDATE_GOLDEN")) == "1";
  for (const GoldenProgram& p : golden_programs()) {
    SCOPED_TRACE(p.name);
    auto f = make(p.code, p.outputs, p.num_inputs, 4);
    const std::string src = codegen::emit_source(f->prog);
    EXPECT_EQ(src, codegen::emit_source(f->prog));  // deterministic
    EXPECT_NE(src.find("extern \"C\" void " + codegen::symbol_name(f->prog) +
                       "(const float* const* inputs, const int64_t* const* input_strides, float* const* outputs,"),
              std::string::npos);
    const fs::path path = fs::path(KILN_SOURCE_DIR) / "tests/graph/golden" / ("codegen_" + p.name + ".cc");
    if (update) {
      std::ofstream(path, std::ios::binary) << src;
      continue;
    }
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in.good()) << path << " is missing; KILN_UPDATE_GOLDEN=1 writes it";
    std::stringstream want;
    want << in.rdbuf();
    EXPECT_EQ(src, want.str()) << path
                               << " differs from the generated source; if the change is meant, rerun "
                                  "with KILN_UPDATE_GOLDEN=1 and review the diff";
  }
}

// Reduction programs: rank 3, the last dim reduced (neither is part of the source).
TEST_F(Codegen, EmittedReductionSourceMatchesGoldenFiles) {
  const bool update = std::getenv("KILN_UPDATE_GOLDEN") && std::string(std::getenv("KILN_UPDATE_GOLDEN")) == "1";
  for (const ReductionProgram& p : reduction_programs()) {
    SCOPED_TRACE(p.name);
    auto f = make_reduction(p.code, p.outputs, p.num_inputs, 3, 1);
    const std::string src = codegen::emit_source(f->prog);
    EXPECT_EQ(src, codegen::emit_source(f->prog));  // deterministic
    EXPECT_EQ(src, codegen::emit_source(make_reduction(p.code, p.outputs, p.num_inputs, 5, 2, false)->prog));
    EXPECT_NE(src.find("extern \"C\" void " + codegen::symbol_name(f->prog) +
                       "(const float* const* inputs, const int64_t* const* input_strides, float* const* outputs,\n"
                       "    const int64_t* shape, int64_t rank, int64_t reduced_rank)"),
              std::string::npos);
    const fs::path path = fs::path(KILN_SOURCE_DIR) / "tests/graph/golden" / ("codegen_reduce_" + p.name + ".cc");
    if (update) {
      std::ofstream(path, std::ios::binary) << src;
      continue;
    }
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in.good()) << path << " is missing; KILN_UPDATE_GOLDEN=1 writes it";
    std::stringstream want;
    want << in.rdbuf();
    EXPECT_EQ(src, want.str()) << path
                               << " differs from the generated source; if the change is meant, rerun "
                                  "with KILN_UPDATE_GOLDEN=1 and review the diff";
  }
}

TEST_F(Codegen, GoldenProgramsCompileAndMatchTheInterpreter) {
  REQUIRE_COMPILER();
  for (const GoldenProgram& p : golden_programs()) {
    SCOPED_TRACE(p.name);
    auto f = make(p.code, p.outputs, p.num_inputs, 3);
    std::vector<Tensor> in;
    const std::vector<Shape> shapes = {{2, 3, 8}, {8}, {2, 3, 1}, {8}, {8}};
    for (int i = 0; i < p.num_inputs; ++i) in.push_back(random(shapes[static_cast<size_t>(i)], 10 + i));
    if (p.name == "layer_norm_tail") in[2] = ops::abs(in[2]);
    std::vector<Tensor> want = interpret(*f, in);
    std::vector<Tensor> got = generated(*f, in, want[0].shape());
    for (size_t j = 0; j < want.size(); ++j)
      EXPECT_EQ(compare_close(got[j].to_vector<float>(), want[j].to_vector<float>()), "");
  }
}

TEST(CodegenEmit, ProgramTextRoundTripsThroughTheNodeForm) {
  auto f = make({"t0 = maximum in1 #-0", "t1 = clamp t0 #-inf #1e-45", "t2 = add t1 #nan"}, {"t2", "t0"}, 2, 1);
  std::vector<std::string> lines = codegen::program_lines(f->prog);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "t0 = maximum in1 #-0");
  EXPECT_EQ(lines[1], "t1 = clamp t0 #-inf #1.40129846e-45");
  EXPECT_EQ(lines[2], "t2 = add t1 #nan");
  EXPECT_EQ(lines[3], "outputs t2 t0");
  EXPECT_EQ(codegen::num_inputs_read(f->prog), 2);
  EXPECT_EQ(codegen::program_hash(f->prog).size(), 16u);
  const std::string src = codegen::emit_source(f->prog);
  EXPECT_NE(src.find("(-0.0f)"), std::string::npos);
  EXPECT_NE(src.find("(-__builtin_inff())"), std::string::npos);
  EXPECT_NE(src.find("kiln_bits_to_float(0x7fc00000)"), std::string::npos);
  // The rank is not part of the program's identity: generated code is rank-generic.
  auto g = make({"t0 = maximum in1 #-0", "t1 = clamp t0 #-inf #1e-45", "t2 = add t1 #nan"}, {"t2", "t0"}, 2, 6);
  EXPECT_EQ(codegen::program_hash(g->prog), codegen::program_hash(f->prog));
  EXPECT_EQ(codegen::emit_source(g->prog), src);
}

}  // namespace
}  // namespace kiln::graph
