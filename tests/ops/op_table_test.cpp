// The op test table for the elementwise, reduction, shape and linear-algebra ops: one row per op
// (or per interesting form of it), each checked by tests/ops/op_harness.h against a plain-loop
// reference, finite differences, strided inputs and bad inputs.
#include <gtest/gtest-spi.h>

#include <cmath>
#include <cstring>

#include "ops/op_harness.h"

using namespace kiln;
using namespace kiln::optest;

namespace {

using F1 = std::function<double(double)>;
using F2 = std::function<double(double, double)>;

// ---------------------------------------------------------------- row builders

MakeFn make1(Shape s, double lo = -1, double hi = 1) {
  return [=](Generator& g) { return Inputs{rnd(g, s, lo, hi)}; };
}
MakeFn make1_away(Shape s, double gap = 0.1, double hi = 1) {
  return [=](Generator& g) { return Inputs{rnd_away(g, s, gap, hi)}; };
}
MakeFn make2(Shape a, Shape b, double lo = -1, double hi = 1) {
  return [=](Generator& g) { return Inputs{rnd(g, a, lo, hi), rnd(g, b, lo, hi)}; };
}

// Small integers stored as f64: comparisons see equal values often.
Tensor small_ints(Generator& g, const Shape& s) {
  Tensor t = to_dtype_raw(indices(g, s, 3), DType::f64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] -= 1.0;
  return t;
}

// Values on a 0.1 grid (a) and a grid shifted by 0.05 (b): never equal, never within 0.05.
MakeFn make_no_ties(Shape a, Shape b) {
  return [=](Generator& g) {
    Tensor x = distinct(g, a), y = distinct(g, b);
    double* p = y.data<double>();
    for (int64_t i = 0; i < y.numel(); ++i) p[i] += 0.05;
    return Inputs{x, y};
  };
}

OpCase unary(std::string name, MakeFn make, std::function<Tensor(const Tensor&)> op, F1 f) {
  return OpCase(std::move(name), std::move(make), [op](const Inputs& x) { return op(x[0]); },
                [f](const std::vector<RefTensor>& x) { return ref_map(x[0], f); });
}

OpCase binary(std::string name, MakeFn make, std::function<Tensor(const Tensor&, const Tensor&)> op, F2 f) {
  return OpCase(std::move(name), std::move(make), [op](const Inputs& x) { return op(x[0], x[1]); },
                [f](const std::vector<RefTensor>& x) { return ref_zip(x[0], x[1], f); });
}

OpCase compare(std::string name, Shape a, Shape b, std::function<Tensor(const Tensor&, const Tensor&)> op,
               std::function<bool(double, double)> f) {
  return OpCase(
      std::move(name), [=](Generator& g) { return Inputs{small_ints(g, a), small_ints(g, b)}; },
      [op](const Inputs& x) { return op(x[0], x[1]); },
      [f](const std::vector<RefTensor>& x) {
        return ref_zip(x[0], x[1], [f](double p, double q) { return f(p, q) ? 1.0 : 0.0; }, DType::b8);
      });
}

// The error for two shapes that do not broadcast must name the op.
std::function<void()> mismatched(std::function<Tensor(const Tensor&, const Tensor&)> op) {
  return [op] { op(Tensor::zeros({2, 3}), Tensor::zeros({4})); };
}

double sigmoid_ref(double v) { return 1.0 / (1.0 + std::exp(-v)); }
double gelu_ref(double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); }
double gelu_tanh_ref(double v) {
  return 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
}

// ---------------------------------------------------------------- elementwise

std::vector<OpCase> elementwise_rows() {
  using namespace kiln::ops;
  std::vector<OpCase> r;
  auto add_binary = [&](const char* name, auto op, F2 f, MakeFn same, MakeFn bcast) {
    r.push_back(binary(name, same, op, f).bad(name, mismatched(op)));
    r.push_back(binary(std::string(name) + "_broadcast", bcast, op, f));
  };
  auto addf = [](const Tensor& a, const Tensor& b) { return add(a, b); };
  auto subf = [](const Tensor& a, const Tensor& b) { return sub(a, b); };
  auto mulf = [](const Tensor& a, const Tensor& b) { return mul(a, b); };
  auto divf = [](const Tensor& a, const Tensor& b) { return div(a, b); };
  auto powf_ = [](const Tensor& a, const Tensor& b) { return pow(a, b); };
  auto maxf = [](const Tensor& a, const Tensor& b) { return maximum(a, b); };
  auto minf = [](const Tensor& a, const Tensor& b) { return minimum(a, b); };
  add_binary("add", addf, [](double a, double b) { return a + b; }, make2({3, 4}, {3, 4}), make2({2, 3, 4}, {3, 1}));
  add_binary("sub", subf, [](double a, double b) { return a - b; }, make2({3, 4}, {3, 4}), make2({4}, {3, 1}));
  add_binary("mul", mulf, [](double a, double b) { return a * b; }, make2({3, 4}, {3, 4}), make2({2, 1, 4}, {3, 1}));
  add_binary("div", divf, [](double a, double b) { return a / b; },
             [](Generator& g) { return Inputs{rnd(g, {3, 4}), rnd_away(g, {3, 4}, 0.3)}; },
             [](Generator& g) { return Inputs{rnd(g, {2, 3, 4}), rnd_away(g, {4}, 0.3)}; });
  add_binary("pow", powf_, [](double a, double b) { return std::pow(a, b); }, make2({3, 4}, {3, 4}, 0.5, 1.5),
             make2({3, 4}, {1, 4}, 0.5, 1.5));
  add_binary("maximum", maxf, [](double a, double b) { return a > b ? a : b; }, make_no_ties({3, 4}, {3, 4}),
             make_no_ties({3, 4}, {4}));
  add_binary("minimum", minf, [](double a, double b) { return a < b ? a : b; }, make_no_ties({3, 4}, {3, 4}),
             make_no_ties({2, 1, 4}, {3, 4}));
  r.back().tol32(1e-6, 1e-6);
  r[0].bad("add", [] { add(Tensor::zeros({2}, DType::b8), Tensor::zeros({2}, DType::b8)); });

  // scalar forms
  struct S { const char* name; std::function<Tensor(const Tensor&)> op; F1 f; MakeFn make; };
  std::vector<S> scalars = {
      {"add_scalar", [](const Tensor& x) { return add(x, 2.5); }, [](double v) { return v + 2.5; }, make1({3, 4})},
      {"sub_scalar", [](const Tensor& x) { return sub(x, 1.5); }, [](double v) { return v - 1.5; }, make1({3, 4})},
      {"mul_scalar", [](const Tensor& x) { return mul(x, -3.0); }, [](double v) { return v * -3.0; }, make1({3, 4})},
      {"div_scalar", [](const Tensor& x) { return div(x, 0.7); }, [](double v) { return v / 0.7; }, make1({3, 4})},
      {"rsub_scalar", [](const Tensor& x) { return rsub(2.0, x); }, [](double v) { return 2.0 - v; }, make1({3, 4})},
      {"rdiv_scalar", [](const Tensor& x) { return rdiv(2.0, x); }, [](double v) { return 2.0 / v; },
       make1_away({3, 4}, 0.3)},
      {"pow_scalar_3", [](const Tensor& x) { return pow(x, 3.0); }, [](double v) { return v * v * v; }, make1({3, 4})},
      {"pow_scalar_2", [](const Tensor& x) { return pow(x, 2.0); }, [](double v) { return v * v; }, make1({3, 4})},
      {"pow_scalar_1", [](const Tensor& x) { return pow(x, 1.0); }, [](double v) { return v; }, make1({3, 4})},
      {"pow_scalar_half", [](const Tensor& x) { return pow(x, 0.5); }, [](double v) { return std::sqrt(v); },
       make1({3, 4}, 0.2, 2.0)},
      {"operator_plus_scalar", [](const Tensor& x) { return 1.0 + x * 2.0 - 0.5; },
       [](double v) { return 1.0 + v * 2.0 - 0.5; }, make1({5})},
      {"operator_div_scalar", [](const Tensor& x) { return 1.0 / x / 2.0; }, [](double v) { return 1.0 / v / 2.0; },
       make1_away({5}, 0.3)},
  };
  for (auto& s : scalars) r.push_back(unary(s.name, s.make, s.op, s.f));
  r.back().tol32(1e-5, 2e-5);

  // comparisons (bool results, no gradient)
  r.push_back(compare("eq", {3, 4}, {3, 4}, [](const Tensor& a, const Tensor& b) { return eq(a, b); },
                      [](double a, double b) { return a == b; })
                  .bad("eq", mismatched([](const Tensor& a, const Tensor& b) { return eq(a, b); })));
  r.push_back(compare("ne", {3, 4}, {4}, [](const Tensor& a, const Tensor& b) { return ne(a, b); },
                      [](double a, double b) { return a != b; }));
  r.push_back(compare("lt", {3, 4}, {3, 1}, [](const Tensor& a, const Tensor& b) { return lt(a, b); },
                      [](double a, double b) { return a < b; })
                  .bad("lt", mismatched([](const Tensor& a, const Tensor& b) { return lt(a, b); })));
  r.push_back(compare("le", {2, 3, 4}, {3, 4}, [](const Tensor& a, const Tensor& b) { return le(a, b); },
                      [](double a, double b) { return a <= b; }));
  r.push_back(compare("gt", {3, 4}, {3, 4}, [](const Tensor& a, const Tensor& b) { return gt(a, b); },
                      [](double a, double b) { return a > b; }));
  r.push_back(compare("ge", {3, 1}, {1, 4}, [](const Tensor& a, const Tensor& b) { return ge(a, b); },
                      [](double a, double b) { return a >= b; }));
  auto cmp_scalar = [&](const char* name, std::function<Tensor(const Tensor&)> op, std::function<bool(double)> f) {
    r.push_back(OpCase(
        name, [](Generator& g) { return Inputs{small_ints(g, {3, 4})}; }, [op](const Inputs& x) { return op(x[0]); },
        [f](const std::vector<RefTensor>& x) { return ref_map(x[0], [f](double v) { return f(v) ? 1.0 : 0.0; }, DType::b8); }));
  };
  cmp_scalar("eq_scalar", [](const Tensor& x) { return eq(x, 0.0); }, [](double v) { return v == 0.0; });
  cmp_scalar("lt_scalar", [](const Tensor& x) { return lt(x, 0.0); }, [](double v) { return v < 0.0; });
  cmp_scalar("gt_scalar", [](const Tensor& x) { return gt(x, 0.0); }, [](double v) { return v > 0.0; });
  r.push_back(OpCase(
      "logical_not", [](Generator& g) { return Inputs{bools(g, {3, 4})}; },
      [](const Inputs& x) { return logical_not(x[0]); },
      [](const std::vector<RefTensor>& x) { return ref_map(x[0], [](double v) { return v != 0 ? 0.0 : 1.0; }, DType::b8); }));

  // where: cond broadcasts with both branches; gradient flows to the branches
  r.push_back(OpCase(
                  "where", [](Generator& g) { return Inputs{bools(g, {3, 4}), rnd(g, {3, 4}), rnd(g, {4})}; },
                  [](const Inputs& x) { return where(x[0], x[1], x[2]); },
                  [](const std::vector<RefTensor>& x) {
                    return ref_zip3(x[0], x[1], x[2], [](double c, double a, double b) { return c != 0 ? a : b; });
                  })
                  .bad("where", [] { where(Tensor::zeros({3}), Tensor::zeros({3}), Tensor::zeros({3})); })
                  .bad("where", [] { where(Tensor::zeros({3}, DType::b8), Tensor::zeros({2}), Tensor::zeros({3})); }));
  r.push_back(OpCase(
      "where_broadcast_cond", [](Generator& g) { return Inputs{bools(g, {4}), rnd(g, {2, 3, 1}), rnd(g, {3, 4})}; },
      [](const Inputs& x) { return where(x[0], x[1], x[2]); },
      [](const std::vector<RefTensor>& x) {
        return ref_zip3(x[0], x[1], x[2], [](double c, double a, double b) { return c != 0 ? a : b; });
      }));

  // unary
  r.push_back(unary("neg", make1({3, 4}), [](const Tensor& x) { return neg(x); }, [](double v) { return -v; }));
  r.push_back(unary("abs", make1_away({3, 4}), [](const Tensor& x) { return abs(x); }, [](double v) { return std::fabs(v); }));
  r.push_back(unary("exp", make1({3, 4}, -3, 3), [](const Tensor& x) { return exp(x); }, [](double v) { return std::exp(v); }));
  r.push_back(unary("log", make1({3, 4}, 0.1, 5), [](const Tensor& x) { return log(x); }, [](double v) { return std::log(v); }));
  r.push_back(unary("sqrt", make1({3, 4}, 0.1, 5), [](const Tensor& x) { return sqrt(x); }, [](double v) { return std::sqrt(v); }));
  r.push_back(unary("rsqrt", make1({3, 4}, 0.1, 5), [](const Tensor& x) { return rsqrt(x); },
                    [](double v) { return 1.0 / std::sqrt(v); }));
  r.push_back(unary("tanh", make1({3, 4}, -3, 3), [](const Tensor& x) { return tanh(x); }, [](double v) { return std::tanh(v); }));
  r.push_back(unary("sigmoid", make1({3, 4}, -5, 5), [](const Tensor& x) { return sigmoid(x); }, sigmoid_ref));
  r.push_back(unary("relu", make1_away({3, 4}), [](const Tensor& x) { return relu(x); }, [](double v) { return v > 0 ? v : 0.0; }));
  r.push_back(unary("gelu", make1({3, 4}, -3, 3), [](const Tensor& x) { return gelu(x); }, gelu_ref));
  r.push_back(unary("gelu_tanh", make1({3, 4}, -3, 3), [](const Tensor& x) { return gelu(x, GeluApprox::tanh); },
                    gelu_tanh_ref));
  r.push_back(unary("silu", make1({3, 4}, -5, 5), [](const Tensor& x) { return silu(x); },
                    [](double v) { return v * sigmoid_ref(v); }));
  // clamp: inputs on a grid shifted off the bounds, so no element sits on a kink
  auto grid = [](Generator& g) {
    Tensor t = distinct(g, {3, 4}, 0.2);
    double* p = t.data<double>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] += 0.05;
    return Inputs{t};
  };
  r.push_back(unary("clamp", grid, [](const Tensor& x) { return clamp(x, -0.5, 0.5); },
                    [](double v) { return std::min(0.5, std::max(-0.5, v)); })
                  .bad("clamp", [] { clamp(Tensor::zeros({2}), 1.0, -1.0); }));
  r.push_back(unary("clamp_min", grid, [](const Tensor& x) { return clamp(x, 0.0, std::nullopt); },
                    [](double v) { return std::max(0.0, v); }));
  r.push_back(unary("clamp_max", grid, [](const Tensor& x) { return clamp(x, std::nullopt, 0.3); },
                    [](double v) { return std::min(0.3, v); }));

  // conversion and copies
  r.push_back(unary("to_other_float", make1({3, 4}, -3, 3),
                    [](const Tensor& x) { return to(x, x.dtype() == DType::f64 ? DType::f32 : DType::f64); },
                    [](double v) { return v; })
                  .tol64(1e-6, 1e-6)
                  .grad_tol(1e-3, 3e-4, 1e-4)
                  .changes_dtype());
  r.push_back(OpCase(
      "to_i64", make1({3, 4}, -5, 5), [](const Inputs& x) { return to(x[0], DType::i64); },
      [](const std::vector<RefTensor>& x) { return ref_map(x[0], [](double v) { return std::trunc(v); }, DType::i64); }));
  r.push_back(unary("contiguous", make1({3, 4}), [](const Tensor& x) { return contiguous(x); }, [](double v) { return v; }));
  r.push_back(unary("clone", make1({3, 4}), [](const Tensor& x) { return clone(x); }, [](double v) { return v; }));

  // in-place forms (on a fresh copy: they are never differentiated)
  r.push_back(OpCase(
                  "add_inplace", make2({3, 4}, {3, 4}),
                  [](const Inputs& x) {
                    Tensor t = clone_raw(x[0]);
                    add_(t, x[1], 0.5);
                    return t;
                  },
                  [](const std::vector<RefTensor>& x) { return ref_zip(x[0], x[1], [](double a, double b) { return a + 0.5 * b; }); })
                  .no_gradient()
                  .bad("add_", [] {
                    Tensor t = Tensor::zeros({3});
                    t.set_requires_grad(true);
                    add_(t, Tensor::ones({3}));
                  }));
  r.push_back(OpCase(
                  "add_inplace_broadcast", make2({3, 4}, {4}),
                  [](const Inputs& x) {
                    Tensor t = clone_raw(x[0]);
                    add_(t, x[1]);
                    return t;
                  },
                  [](const std::vector<RefTensor>& x) { return ref_zip(x[0], x[1], [](double a, double b) { return a + b; }); })
                  .no_gradient()
                  .bad("add_", [] {
                    Tensor t = Tensor::zeros({4});
                    add_(t, Tensor::ones({3, 4}));
                  }));
  r.push_back(OpCase(
                  "mul_inplace", make2({3, 4}, {1, 4}),
                  [](const Inputs& x) {
                    Tensor t = clone_raw(x[0]);
                    mul_(t, x[1]);
                    mul_(t, 2.0);
                    return t;
                  },
                  [](const std::vector<RefTensor>& x) { return ref_zip(x[0], x[1], [](double a, double b) { return a * b * 2.0; }); })
                  .no_gradient()
                  .bad("mul_", [] {
                    Tensor t = Tensor::zeros({3});
                    t.set_requires_grad(true);
                    mul_(t, 2.0);
                  }));
  r.push_back(OpCase(
                  "fill_zero_copy_inplace", make2({3, 4}, {4}),
                  [](const Inputs& x) {
                    Tensor a = clone_raw(x[0]), b = clone_raw(x[0]), c = clone_raw(x[0]);
                    fill_(a, 1.5);
                    zero_(b);
                    copy_(c, x[1]);
                    return cat({a, b, c}, 0);
                  },
                  [](const std::vector<RefTensor>& x) {
                    RefTensor out({9, 4});
                    for (int64_t i = 0; i < 3; ++i)
                      for (int64_t j = 0; j < 4; ++j) {
                        out.at({i, j}) = 1.5;
                        out.at({i + 3, j}) = 0.0;
                        out.at({i + 6, j}) = x[1].v[j];
                      }
                    return out;
                  })
                  .no_gradient()
                  .bad("copy_", [] {
                    Tensor t = Tensor::zeros({4});
                    copy_(t, Tensor::ones({3}));
                  })
                  .bad("fill_", [] {
                    Tensor t = Tensor::zeros({3});
                    t.set_requires_grad(true);
                    fill_(t, 1.0);
                  }));
  return r;
}

}  // namespace

KILN_OP_TABLE(ElementwiseOps, elementwise_rows());

// ---------------------------------------------------------------- the harness catches bugs

TEST(OpHarness, CatchesWrongForward) {
  OpCase c = unary("wrong_exp", make1({3, 2}), [](const Tensor& x) { return ops::exp(x); },
                   [](double v) { return std::exp(v) + 1e-3; })
                 .no_f32();
  EXPECT_NONFATAL_FAILURE(check_forward(c), "elements differ");
}

TEST(OpHarness, CatchesWrongGradient) {
  // d/dx x * stop_gradient(x) is x by autograd but 2x numerically.
  OpCase c = unary("wrong_grad", make1({3, 2}), [](const Tensor& x) { return ops::mul(x, x.detach()); },
                   [](double v) { return v * v; });
  EXPECT_NONFATAL_FAILURE(check_gradient(c), "gradient");
}

TEST(OpHarness, CatchesStrideBlindKernel) {
  // Reads storage in memory order, ignoring strides: right for contiguous inputs only.
  OpCase c = unary("stride_blind", make1({3, 2}),
                   [](const Tensor& x) {
                     Tensor out = Tensor::empty(x.shape(), x.dtype());
                     std::memcpy(out.raw_data(), x.raw_data(), x.numel() * element_size(x.dtype()));
                     return out;
                   },
                   [](double v) { return v; })
                 .no_gradient()
                 .no_f32();
  check_forward(c);
  EXPECT_NONFATAL_FAILURE(check_strided(c), "strided inputs");
}

TEST(OpHarness, CatchesAcceptedBadInput) {
  OpCase c = unary("lenient", make1({2}), [](const Tensor& x) { return x; }, [](double v) { return v; })
                 .bad("lenient", [] {});
  EXPECT_NONFATAL_FAILURE(check_bad_inputs(c), "was accepted");
}
