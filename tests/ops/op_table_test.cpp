// The op test table for the elementwise, reduction, shape and linear-algebra ops: one row per op
// (or per interesting form of it), each checked by tests/ops/op_harness.h against a plain-loop
// reference, finite differences, strided inputs and bad inputs.
#include <gtest/gtest-spi.h>

#include <cmath>
#include <cstring>

#include <fstream>
#include <regex>
#include <set>

#include "kiln/ops/op_registry.h"
#include "kiln/ops/rnn_ops.h"
#include "kiln/ops/signal_ops.h"
#include "kiln/ops/training_ops.h"
#include "kiln/ops/vision_ops.h"
#include "kiln/ops/spatial_nd.h"
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

// ---------------------------------------------------------------- reference helpers

RefTensor ref_reshape(RefTensor x, Shape s) {
  x.shape = std::move(s);
  return x;
}

RefTensor ref_permute(const RefTensor& x, const std::vector<int64_t>& dims) {
  Shape s;
  for (int64_t d : dims) s.push_back(x.shape[d]);
  RefTensor out(s, x.dtype);
  for (int64_t i = 0; i < out.numel(); ++i) {
    auto o = unravel(i, s);
    std::vector<int64_t> idx(dims.size());
    for (size_t k = 0; k < dims.size(); ++k) idx[dims[k]] = o[k];
    out.v[i] = x.at(idx);
  }
  return out;
}

// Elements start, start+step, ... < end along dim (bounds already resolved).
RefTensor ref_slice(const RefTensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1) {
  Shape s = x.shape;
  s[dim] = std::max<int64_t>(0, (end - start + step - 1) / step);
  RefTensor out(s, x.dtype);
  for (int64_t i = 0; i < out.numel(); ++i) {
    auto idx = unravel(i, s);
    idx[dim] = start + idx[dim] * step;
    out.v[i] = x.at(idx);
  }
  return out;
}

RefTensor ref_cat(const std::vector<RefTensor>& xs, int64_t dim) {
  Shape s = xs[0].shape;
  s[dim] = 0;
  for (const auto& x : xs) s[dim] += x.shape[dim];
  RefTensor out(s, xs[0].dtype);
  int64_t base = 0;
  for (const auto& x : xs) {
    for (int64_t i = 0; i < x.numel(); ++i) {
      auto idx = unravel(i, x.shape);
      idx[dim] += base;
      out.at(idx) = x.v[i];
    }
    base += x.shape[dim];
  }
  return out;
}

// NumPy matmul: 1-d operands promoted (and squeezed back), batch dims broadcast.
RefTensor ref_matmul(RefTensor a, RefTensor b) {
  bool a1 = a.dim() == 1, b1 = b.dim() == 1;
  if (a1) a.shape.insert(a.shape.begin(), 1);
  if (b1) b.shape.push_back(1);
  int64_t M = a.shape[a.dim() - 2], K = a.shape[a.dim() - 1], N = b.shape[b.dim() - 1];
  Shape ab(a.shape.begin(), a.shape.end() - 2), bb(b.shape.begin(), b.shape.end() - 2);
  Shape batch = ref_broadcast(ab, bb);
  Shape s = batch;
  s.push_back(M);
  s.push_back(N);
  RefTensor out(s);
  for (int64_t i = 0; i < out.numel(); ++i) {
    auto idx = unravel(i, s);
    std::vector<int64_t> bi(idx.begin(), idx.end() - 2);
    int64_t m = idx[idx.size() - 2], n = idx.back();
    auto at = [&](const RefTensor& t, const Shape& tb, int64_t r, int64_t c) {
      std::vector<int64_t> ti;
      for (size_t d = 0; d < tb.size(); ++d) ti.push_back(tb[d] == 1 ? 0 : bi[bi.size() - tb.size() + d]);
      ti.push_back(r);
      ti.push_back(c);
      return t.at(ti);
    };
    double acc = 0;
    for (int64_t k = 0; k < K; ++k) acc += at(a, ab, m, k) * at(b, bb, k, n);
    out.v[i] = acc;
  }
  if (a1) out.shape.erase(out.shape.end() - 2);
  if (b1) out.shape.pop_back();
  return out;
}

double ref_sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}
double ref_var(const std::vector<double>& v, double correction) {
  double m = ref_sum(v) / v.size(), s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s / (v.size() - correction);
}
double ref_lse(const std::vector<double>& v) {
  double m = *std::max_element(v.begin(), v.end()), s = 0;
  for (double x : v) s += std::exp(x - m);
  return m + std::log(s);
}
template <bool kMax>
double ref_arg_extremum(const std::vector<double>& v) {  // first occurrence wins
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (kMax ? v[i] > v[best] : v[i] < v[best]) best = i;
  return static_cast<double>(best);
}

OpCase row(std::string name, MakeFn make, OpFn op, RefFn ref) {
  return OpCase(std::move(name), std::move(make), std::move(op), std::move(ref));
}

// ---------------------------------------------------------------- reductions

std::vector<OpCase> reduction_rows() {
  using namespace kiln::ops;
  std::vector<OpCase> r;
  auto reduce_row = [&](std::string name, MakeFn make, std::function<Tensor(const Tensor&)> op, std::vector<int64_t> dims,
                        bool keepdim, std::function<double(const std::vector<double>&)> f, DType dt = DType::f64) {
    r.push_back(row(std::move(name), std::move(make), [op](const Inputs& x) { return op(x[0]); },
                    [=](const std::vector<RefTensor>& x) { return ref_reduce(x[0], dims, keepdim, f, dt); }));
    return &r.back();
  };
  reduce_row("sum_all", make1({3, 4}), [](const Tensor& x) { return sum(x); }, {}, false, ref_sum)
      ->bad("sum", [] { sum(Tensor::zeros({2, 3}), {2}); })
      .bad("sum", [] { sum(Tensor::zeros({2, 3}), {1, -1}); });
  reduce_row("sum_dim1", make1({3, 4}), [](const Tensor& x) { return sum(x, {1}); }, {1}, false, ref_sum);
  reduce_row("sum_dim0", make1({5, 4}), [](const Tensor& x) { return sum(x, {0}); }, {0}, false, ref_sum);
  reduce_row("sum_dims02_keepdim", make1({2, 3, 4}), [](const Tensor& x) { return sum(x, {0, 2}, true); }, {0, 2}, true,
             ref_sum);
  reduce_row("mean_all", make1({3, 4}), [](const Tensor& x) { return mean(x); }, {}, false,
             [](const std::vector<double>& v) { return ref_sum(v) / v.size(); })
      ->bad("mean", [] { mean(Tensor::zeros({2}, DType::i64)); });
  reduce_row("mean_dim_neg1_keepdim", make1({3, 4}), [](const Tensor& x) { return mean(x, {-1}, true); }, {-1}, true,
             [](const std::vector<double>& v) { return ref_sum(v) / v.size(); });

  auto unbiased = [](const std::vector<double>& v) { return ref_var(v, 1); };
  reduce_row("var_all", make1({3, 4}), [](const Tensor& x) { return var(x); }, {}, false, unbiased)
      ->bad("var", [] { var(Tensor::zeros({3}, DType::i64)); })
      .bad("var", [] { var(Tensor::zeros({3}), {1}); })
      .bad("var", [] { var(Tensor::zeros({3, 2}), {0, 0}); });
  reduce_row("var_dim1_biased", make1({3, 5}), [](const Tensor& x) { return var(x, {1}, false); }, {1}, false,
             [](const std::vector<double>& v) { return ref_var(v, 0); });
  reduce_row("var_dims02_keepdim", make1({2, 3, 4}), [](const Tensor& x) { return var(x, {0, 2}, true, true); }, {0, 2},
             true, unbiased);
  reduce_row("var_dim0_offset", make1({6, 3}, 99, 101), [](const Tensor& x) { return var(x, {0}); }, {0}, false, unbiased)
      ->tol32(1e-3, 1e-3);  // f32 inputs near 100 carry only ~1e-5 of resolution
  reduce_row("var_single_element_is_nan", make1({3, 1}), [](const Tensor& x) { return var(x, {1}); }, {1}, false,
             unbiased)
      ->no_gradient();

  reduce_row("logsumexp_dim1", make1({3, 4}, -3, 3), [](const Tensor& x) { return logsumexp(x, {1}); }, {1}, false, ref_lse)
      ->bad("logsumexp", [] { logsumexp(Tensor::zeros({3}, DType::i32), {0}); })
      .bad("logsumexp", [] { logsumexp(Tensor::zeros({3}), {3}); });
  reduce_row("logsumexp_all", make1({3, 4}, -3, 3), [](const Tensor& x) { return logsumexp(x, {}); }, {}, false, ref_lse);
  reduce_row("logsumexp_dims02_keepdim", make1({2, 3, 4}), [](const Tensor& x) { return logsumexp(x, {0, 2}, true); },
             {0, 2}, true, ref_lse);
  reduce_row("logsumexp_large_values", make1({3, 4}, 1000, 1010), [](const Tensor& x) { return logsumexp(x, {1}); }, {1},
             false, ref_lse)
      ->tol32(2e-4, 1e-6);

  auto distinct_make = [](Shape s) { return [s](Generator& g) { return Inputs{distinct(g, s)}; }; };
  auto vmax = [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); };
  auto vmin = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
  reduce_row("amax_dim1", distinct_make({3, 4}), [](const Tensor& x) { return amax(x, {1}); }, {1}, false, vmax)
      ->bad("amax", [] { amax(Tensor::zeros({3, 0}), {1}); })
      .bad("amax", [] { amax(Tensor::zeros({3}), {-2}); });
  reduce_row("amax_all", distinct_make({3, 4}), [](const Tensor& x) { return amax(x); }, {}, false, vmax);
  reduce_row("amax_dims02_keepdim", distinct_make({2, 3, 4}), [](const Tensor& x) { return amax(x, {0, 2}, true); },
             {0, 2}, true, vmax);
  reduce_row("max_values_dim1", distinct_make({3, 4}), [](const Tensor& x) { return max(x, 1).first; }, {1}, false, vmax)
      ->bad("max", [] { max(Tensor::zeros({3}), 1); })
      .bad("max", [] { max(Tensor::zeros({3}, DType::b8), 0); });
  reduce_row("max_indices_dim1", distinct_make({3, 4}), [](const Tensor& x) { return max(x, 1).second; }, {1}, false,
             ref_arg_extremum<true>, DType::i64);
  reduce_row("max_values_dim0_keepdim", distinct_make({3, 4}), [](const Tensor& x) { return max(x, 0, true).first; },
             {0}, true, vmax);
  reduce_row("max_indices_dim0_keepdim", distinct_make({3, 4}), [](const Tensor& x) { return max(x, 0, true).second; },
             {0}, true, ref_arg_extremum<true>, DType::i64);
  reduce_row("min_values_dim1", distinct_make({2, 3, 4}), [](const Tensor& x) { return min(x, 1).first; }, {1}, false,
             vmin)
      ->bad("min", [] { min(Tensor::zeros({3, 0}), 1); });
  reduce_row("min_indices_dim_neg1", distinct_make({2, 3, 4}), [](const Tensor& x) { return min(x, -1).second; }, {-1},
             false, ref_arg_extremum<false>, DType::i64);
  // ties: the first occurrence wins (values are small integers, so most rows tie)
  auto ties = [](Shape s) { return [s](Generator& g) { return Inputs{small_ints(g, s)}; }; };
  reduce_row("max_indices_ties", ties({6, 5}), [](const Tensor& x) { return max(x, 1).second; }, {1}, false,
             ref_arg_extremum<true>, DType::i64);
  reduce_row("min_indices_ties", ties({6, 5}), [](const Tensor& x) { return min(x, 0).second; }, {0}, false,
             ref_arg_extremum<false>, DType::i64);
  reduce_row("argmax_dim_neg1", ties({6, 5}), [](const Tensor& x) { return argmax(x, -1); }, {-1}, false,
             ref_arg_extremum<true>, DType::i64)
      ->bad("argmax", [] { argmax(Tensor::zeros({2, 3}), 2); });
  reduce_row("argmax_dim0_keepdim", distinct_make({4, 3}), [](const Tensor& x) { return argmax(x, 0, true); }, {0}, true,
             ref_arg_extremum<true>, DType::i64);
  r.push_back(row(
      "argmax_i64", [](Generator& g) { return Inputs{indices(g, {4, 7}, 5)}; },
      [](const Inputs& x) { return argmax(x[0], 1); },
      [](const std::vector<RefTensor>& x) { return ref_reduce(x[0], {1}, false, ref_arg_extremum<true>, DType::i64); }));
  r.push_back(row(
      "amax_i64", [](Generator& g) { return Inputs{indices(g, {4, 7}, 50)}; },
      [](const Inputs& x) { return amax(x[0], {0}); },
      [](const std::vector<RefTensor>& x) {
        return ref_reduce(x[0], {0}, false, [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); },
                          DType::i64);
      }));
  return r;
}

// ---------------------------------------------------------------- shape ops

std::vector<OpCase> shape_rows() {
  using namespace kiln::ops;
  std::vector<OpCase> r;
  auto view_row = [&](std::string name, Shape in, std::function<Tensor(const Tensor&)> op,
                      std::function<RefTensor(const RefTensor&)> ref) {
    r.push_back(row(std::move(name), make1(in), [op](const Inputs& x) { return op(x[0]); },
                    [ref](const std::vector<RefTensor>& x) { return ref(x[0]); }));
    return &r.back();
  };
  view_row("reshape", {3, 4}, [](const Tensor& x) { return reshape(x, {2, 6}); },
           [](const RefTensor& x) { return ref_reshape(x, {2, 6}); })
      ->bad("reshape", [] { reshape(Tensor::zeros({3, 4}), {5, 2}); })
      .bad("reshape", [] { reshape(Tensor::zeros({3, 4}), {-1, -1}); });
  view_row("reshape_infer", {2, 3, 4}, [](const Tensor& x) { return reshape(x, {4, -1}); },
           [](const RefTensor& x) { return ref_reshape(x, {4, 6}); });
  view_row("flatten", {2, 3, 4}, [](const Tensor& x) { return flatten(x, 1); },
           [](const RefTensor& x) { return ref_reshape(x, {2, 12}); })
      ->bad("flatten", [] { flatten(Tensor::zeros({2, 3}), 1, 0); });
  view_row("squeeze", {3, 1, 4}, [](const Tensor& x) { return squeeze(x, 1); },
           [](const RefTensor& x) { return ref_reshape(x, {3, 4}); })
      ->bad("squeeze", [] { squeeze(Tensor::zeros({3, 1}), 2); });
  view_row("unsqueeze", {3, 4}, [](const Tensor& x) { return unsqueeze(x, -1); },
           [](const RefTensor& x) { return ref_reshape(x, {3, 4, 1}); })
      ->bad("unsqueeze", [] { unsqueeze(Tensor::zeros({3, 4}), 4); });
  view_row("permute", {2, 3, 4}, [](const Tensor& x) { return permute(x, {2, 0, 1}); },
           [](const RefTensor& x) { return ref_permute(x, {2, 0, 1}); })
      ->bad("permute", [] { permute(Tensor::zeros({2, 3}), {0, 0}); })
      .bad("permute", [] { permute(Tensor::zeros({2, 3}), {0}); });
  view_row("transpose", {2, 3, 4}, [](const Tensor& x) { return transpose(x, 0, 2); },
           [](const RefTensor& x) { return ref_permute(x, {2, 1, 0}); })
      ->bad("transpose", [] { transpose(Tensor::zeros({2, 3}), 0, 2); });
  view_row("slice_step", {3, 8}, [](const Tensor& x) { return slice(x, 1, 1, 7, 2); },
           [](const RefTensor& x) { return ref_slice(x, 1, 1, 7, 2); })
      ->bad("slice", [] { slice(Tensor::zeros({3}), 0, 0, 2, 0); });
  view_row("slice_negative_clamped", {5, 3}, [](const Tensor& x) { return slice(x, 0, -2, 100); },
           [](const RefTensor& x) { return ref_slice(x, 0, 3, 5); });
  view_row("expand", {3, 1}, [](const Tensor& x) { return expand(x, {2, 3, 4}); },
           [](const RefTensor& x) {
             RefTensor out({2, 3, 4});
             for (int64_t i = 0; i < out.numel(); ++i) out.v[i] = ref_bcast_at(x, unravel(i, out.shape));
             return out;
           })
      ->bad("expand", [] { expand(Tensor::zeros({3, 2}), {3, 4}); });

  // index_select: duplicate indices make the backward accumulate
  auto index_select_ref = [](int64_t dim) {
    return [dim](const std::vector<RefTensor>& x) {
      Shape s = x[0].shape;
      s[dim] = x[1].numel();
      RefTensor out(s);
      for (int64_t i = 0; i < out.numel(); ++i) {
        auto idx = unravel(i, s);
        idx[dim] = static_cast<int64_t>(x[1].v[idx[dim]]);
        out.v[i] = x[0].at(idx);
      }
      return out;
    };
  };
  r.push_back(row(
                  "index_select_dim0", [](Generator& g) { return Inputs{rnd(g, {5, 3}), Tensor::from_vector<int64_t>({4, 0, 4, 2})}; },
                  [](const Inputs& x) { return index_select(x[0], 0, x[1]); }, index_select_ref(0))
                  .bad("index_select", [] { index_select(Tensor::zeros({5, 3}), 0, Tensor::from_vector<int64_t>({5})); })
                  .bad("index_select", [] { index_select(Tensor::zeros({5, 3}), 0, Tensor::from_vector<int64_t>({-1})); })
                  .bad("index_select", [] { index_select(Tensor::zeros({5, 3}), 0, Tensor::zeros({2})); })
                  .bad("index_select", [] { index_select(Tensor::zeros({5, 3}), 0, Tensor::zeros({2, 1}, DType::i64)); })
                  .bad("index_select", [] { index_select(Tensor::zeros({5, 3}), 2, Tensor::zeros({1}, DType::i64)); }));
  r.push_back(row(
      "index_select_dim1_i32",
      [](Generator& g) { return Inputs{rnd(g, {2, 4, 3}), Tensor::from_vector<int32_t>({1, 1, 3})}; },
      [](const Inputs& x) { return index_select(x[0], 1, x[1]); }, index_select_ref(1)));

  // gather / scatter_add: out[i][j] = x[i][index[i][j]] (dim 1) and its adjoint
  auto gather_ref = [](int64_t dim) {
    return [dim](const std::vector<RefTensor>& x) {
      RefTensor out(x[1].shape);
      for (int64_t i = 0; i < out.numel(); ++i) {
        auto idx = unravel(i, out.shape);
        idx[dim] = static_cast<int64_t>(x[1].v[i]);
        out.v[i] = x[0].at(idx);
      }
      return out;
    };
  };
  r.push_back(row(
                  "gather_dim1", [](Generator& g) { return Inputs{rnd(g, {3, 4}), indices(g, {3, 6}, 4)}; },
                  [](const Inputs& x) { return gather(x[0], 1, x[1]); }, gather_ref(1))
                  .bad("gather", [] { gather(Tensor::zeros({3, 4}), 1, Tensor::zeros({3}, DType::i64)); })
                  .bad("gather", [] { gather(Tensor::zeros({3, 4}), 1, Tensor::full({3, 1}, 4, DType::i64)); })
                  .bad("gather", [] { gather(Tensor::zeros({3, 4}), 1, Tensor::zeros({4, 1}, DType::i64)); }));
  r.push_back(row(
      "gather_dim0_smaller_index", [](Generator& g) { return Inputs{rnd(g, {4, 5}), indices(g, {3, 2}, 4)}; },
      [](const Inputs& x) { return gather(x[0], 0, x[1]); }, gather_ref(0)));
  auto scatter_ref = [](int64_t dim) {
    return [dim](const std::vector<RefTensor>& x) {
      RefTensor out = x[0];
      for (int64_t i = 0; i < x[1].numel(); ++i) {
        auto idx = unravel(i, x[1].shape);
        double v = x[2].at(idx);
        idx[dim] = static_cast<int64_t>(x[1].v[i]);
        out.at(idx) += v;
      }
      return out;
    };
  };
  r.push_back(row(
                  "scatter_add_dim1",
                  [](Generator& g) { return Inputs{rnd(g, {3, 4}), indices(g, {3, 6}, 4), rnd(g, {3, 6})}; },
                  [](const Inputs& x) { return scatter_add(x[0], 1, x[1], x[2]); }, scatter_ref(1))
                  .bad("scatter_add", [] {
                    scatter_add(Tensor::zeros({3}), 0, Tensor::zeros({2}, DType::i64), Tensor::zeros({2}, DType::f64));
                  })
                  .bad("scatter_add", [] {
                    scatter_add(Tensor::zeros({3}), 0, Tensor::full({2}, 3, DType::i64), Tensor::zeros({2}));
                  })
                  .bad("scatter_add", [] {
                    scatter_add(Tensor::zeros({3}), 0, Tensor::zeros({4}, DType::i64), Tensor::zeros({2}));
                  }));
  r.push_back(row(
      "scatter_add_dim0_src_larger",
      [](Generator& g) { return Inputs{rnd(g, {3, 4}), indices(g, {5, 2}, 3), rnd(g, {6, 3})}; },
      [](const Inputs& x) { return scatter_add(x[0], 0, x[1], x[2]); }, scatter_ref(0)));

  // cat / stack / split
  r.push_back(row(
                  "cat_dim0", [](Generator& g) { return Inputs{rnd(g, {2, 3}), rnd(g, {1, 3}), rnd(g, {3, 3})}; },
                  [](const Inputs& x) { return cat(x, 0); },
                  [](const std::vector<RefTensor>& x) { return ref_cat(x, 0); })
                  .bad("cat", [] { cat({Tensor::zeros({2, 3}), Tensor::zeros({2, 4})}, 0); })
                  .bad("cat", [] { cat({Tensor::zeros({2, 3}), Tensor::zeros({3})}, 0); })
                  .bad("cat", [] { cat({}, 0); })
                  .bad("cat", [] { cat({Tensor::scalar(1)}, 0); }));
  r.push_back(row(
      "cat_dim_neg1", [](Generator& g) { return Inputs{rnd(g, {2, 2, 3}), rnd(g, {2, 2, 1})}; },
      [](const Inputs& x) { return cat(x, -1); }, [](const std::vector<RefTensor>& x) { return ref_cat(x, 2); }));
  auto stack_ref = [](int64_t dim) {
    return [dim](const std::vector<RefTensor>& x) {
      std::vector<RefTensor> u;
      for (auto t : x) {
        t.shape.insert(t.shape.begin() + dim, 1);
        u.push_back(t);
      }
      return ref_cat(u, dim);
    };
  };
  r.push_back(row(
                  "stack_dim0", [](Generator& g) { return Inputs{rnd(g, {2, 3}), rnd(g, {2, 3}), rnd(g, {2, 3})}; },
                  [](const Inputs& x) { return stack(x, 0); }, stack_ref(0))
                  .bad("stack", [] { stack({Tensor::zeros({2, 3}), Tensor::zeros({3, 2})}, 0); })
                  .bad("stack", [] { stack({Tensor::zeros({2, 3})}, 3); }));
  r.push_back(row(
      "stack_last", [](Generator& g) { return Inputs{rnd(g, {2, 3}), rnd(g, {2, 3})}; },
      [](const Inputs& x) { return stack(x, -1); }, stack_ref(2)));
  for (int64_t k = 0; k < 3; ++k) {
    r.push_back(row(
        "split_size_part" + std::to_string(k), make1({3, 5}),
        [k](const Inputs& x) { return split(x[0], 2, 1)[k]; },
        [k](const std::vector<RefTensor>& x) { return ref_slice(x[0], 1, 2 * k, std::min<int64_t>(2 * k + 2, 5)); }));
  }
  r.back().bad("split", [] { split(Tensor::zeros({3, 5}), 0, 1); });
  r.push_back(row(
                  "split_sizes_part1", make1({6, 2}), [](const Inputs& x) { return split(x[0], {1, 3, 2}, 0)[1]; },
                  [](const std::vector<RefTensor>& x) { return ref_slice(x[0], 0, 1, 4); })
                  .bad("split", [] { split(Tensor::zeros({6, 2}), std::vector<int64_t>{1, 3}, 0); })
                  .bad("split", [] { split(Tensor::zeros({6, 2}), std::vector<int64_t>{7, -1}, 0); }));

  // pad: torch order (last dim first), constant value, negative pads crop
  auto pad_ref = [](std::vector<int64_t> pads, double value) {
    return [pads, value](const std::vector<RefTensor>& x) {
      Shape s = x[0].shape;
      int64_t nd = x[0].dim();
      for (size_t i = 0; i < pads.size() / 2; ++i) s[nd - 1 - i] += pads[2 * i] + pads[2 * i + 1];
      RefTensor out(s);
      for (int64_t i = 0; i < out.numel(); ++i) {
        auto idx = unravel(i, s);
        bool inside = true;
        for (size_t k = 0; k < pads.size() / 2; ++k) {
          int64_t d = nd - 1 - static_cast<int64_t>(k);
          idx[d] -= pads[2 * k];
          inside = inside && idx[d] >= 0 && idx[d] < x[0].shape[d];
        }
        out.v[i] = inside ? x[0].at(idx) : value;
      }
      return out;
    };
  };
  r.push_back(row("pad_last", make1({2, 3, 4}), [](const Inputs& x) { return pad(x[0], {1, 2}); }, pad_ref({1, 2}, 0.0))
                  .bad("pad", [] { pad(Tensor::zeros({2, 3}), {1}); })
                  .bad("pad", [] { pad(Tensor::zeros({2, 3}), {1, 1, 1, 1, 1, 1}); })
                  .bad("pad", [] { pad(Tensor::zeros({2, 3}), {-2, -2}); }));
  r.push_back(row("pad_two_dims_value", make1({2, 3, 4}), [](const Inputs& x) { return pad(x[0], {1, 0, 0, 2}, 0.5); },
                  pad_ref({1, 0, 0, 2}, 0.5)));
  r.push_back(row("pad_negative_crops", make1({3, 5}), [](const Inputs& x) { return pad(x[0], {-1, 2, 1, -2}); },
                  pad_ref({-1, 2, 1, -2}, 0.0)));

  // topk: sorted values with their indices
  auto topk_ref = [](int64_t k, int64_t dim, bool largest, bool want_indices) {
    return [=](const std::vector<RefTensor>& x) {
      Shape s = x[0].shape;
      s[dim] = k;
      RefTensor out(s, want_indices ? DType::i64 : DType::f64);
      for (int64_t i = 0; i < out.numel(); ++i) {
        auto idx = unravel(i, s);
        int64_t rank = idx[dim];
        std::vector<std::pair<double, int64_t>> line;
        for (int64_t j = 0; j < x[0].shape[dim]; ++j) {
          idx[dim] = j;
          line.push_back({largest ? -x[0].at(idx) : x[0].at(idx), j});
        }
        std::sort(line.begin(), line.end());
        out.v[i] = want_indices ? static_cast<double>(line[rank].second) : (largest ? -1 : 1) * line[rank].first;
      }
      return out;
    };
  };
  auto dmake = [](Shape s) { return [s](Generator& g) { return Inputs{distinct(g, s)}; }; };
  r.push_back(row("topk_values", dmake({3, 6}), [](const Inputs& x) { return topk(x[0], 3).first; },
                  topk_ref(3, 1, true, false))
                  .bad("topk", [] { topk(Tensor::zeros({3, 6}), 7); })
                  .bad("topk", [] { topk(Tensor::zeros({3, 6}), -1); })
                  .bad("topk", [] { topk(Tensor::zeros({3, 6}), 1, 2); }));
  r.push_back(row("topk_indices", dmake({3, 6}), [](const Inputs& x) { return topk(x[0], 3).second; },
                  topk_ref(3, 1, true, true)));
  r.push_back(row("topk_smallest_dim0", dmake({5, 3}), [](const Inputs& x) { return topk(x[0], 2, 0, false).first; },
                  topk_ref(2, 0, false, false)));
  r.push_back(row("topk_smallest_dim0_indices", dmake({5, 3}),
                  [](const Inputs& x) { return topk(x[0], 2, 0, false).second; }, topk_ref(2, 0, false, true)));
  r.push_back(row("topk_ties_lower_index_first", [](Generator& g) { return Inputs{small_ints(g, {4, 7})}; },
                  [](const Inputs& x) { return topk(x[0], 4).second; }, topk_ref(4, 1, true, true)));
  return r;
}

// ---------------------------------------------------------------- matmul and linear

std::vector<OpCase> linalg_rows() {
  using namespace kiln::ops;
  std::vector<OpCase> r;
  auto mm = [&](std::string name, Shape a, Shape b) {
    r.push_back(row(std::move(name), make2(a, b), [](const Inputs& x) { return matmul(x[0], x[1]); },
                    [](const std::vector<RefTensor>& x) { return ref_matmul(x[0], x[1]); })
                    .tol32(1e-5, 1e-5));
    return &r.back();
  };
  mm("matmul_2d", {3, 4}, {4, 5})
      ->bad("matmul", [] { matmul(Tensor::zeros({3, 4}), Tensor::zeros({5, 2})); })
      .bad("matmul", [] { matmul(Tensor::zeros({3, 4}), Tensor::zeros({4, 2}, DType::f64)); })
      .bad("matmul", [] { matmul(Tensor::scalar(1), Tensor::zeros({1})); })
      .bad("matmul", [] { matmul(Tensor::zeros({2, 3, 4}), Tensor::zeros({3, 4, 2})); });
  mm("matmul_batched", {2, 3, 4}, {2, 4, 5});
  mm("matmul_broadcast_batch", {2, 1, 3, 4}, {3, 4, 5});
  mm("matmul_shared_rhs", {2, 3, 4}, {4, 2});
  mm("matmul_vec_mat", {4}, {4, 5});
  mm("matmul_mat_vec", {3, 4}, {4});
  mm("matmul_vec_vec", {4}, {4});
  mm("matmul_batched_vec", {2, 3, 4}, {4});
  auto linear_ref = [](const std::vector<RefTensor>& x) {
    RefTensor w = x[1];
    RefTensor wt({w.shape[1], w.shape[0]});
    for (int64_t i = 0; i < w.shape[0]; ++i)
      for (int64_t j = 0; j < w.shape[1]; ++j) wt.at({j, i}) = w.at({i, j});
    RefTensor y = ref_matmul(x[0], wt);
    if (x.size() > 2) y = ref_zip(y, x[2], [](double a, double b) { return a + b; });
    return y;
  };
  r.push_back(row("linear_bias", [](Generator& g) { return Inputs{rnd(g, {3, 4}), rnd(g, {5, 4}), rnd(g, {5})}; },
                  [](const Inputs& x) { return linear(x[0], x[1], x[2]); }, linear_ref)
                  .bad("linear", [] { linear(Tensor::zeros({3, 4}), Tensor::zeros({5, 3})); })
                  .bad("linear", [] { linear(Tensor::zeros({3, 4}), Tensor::zeros({5, 4}), Tensor::zeros({4})); })
                  .bad("linear", [] { linear(Tensor::zeros({3, 4}), Tensor::zeros({4})); }));
  r.push_back(row("linear_no_bias_3d", [](Generator& g) { return Inputs{rnd(g, {2, 3, 4}), rnd(g, {5, 4})}; },
                  [](const Inputs& x) { return linear(x[0], x[1]); }, linear_ref));
  return r;
}

// ---------------------------------------------------------------- large inputs

// Big enough for the threaded paths and for rows longer than one reduction chunk (16384);
// forward (contiguous and strided) only: finite differences over 10^5 elements would be slow.
std::vector<OpCase> large_rows() {
  using namespace kiln::ops;
  std::vector<OpCase> r;
  auto add = [&](OpCase c) { r.push_back(c.no_gradient().tol32(1e-5, 1e-5)); };
  auto reduce = [&](std::string name, MakeFn make, std::function<Tensor(const Tensor&)> op, std::vector<int64_t> dims,
                    std::function<double(const std::vector<double>&)> f, DType dt = DType::f64) {
    add(row(std::move(name), std::move(make), [op](const Inputs& x) { return op(x[0]); },
            [=](const std::vector<RefTensor>& x) { return ref_reduce(x[0], dims, false, f, dt); }));
  };
  auto dmake = [](Shape s) { return [s](Generator& g) { return Inputs{distinct(g, s, 0.01)}; }; };
  reduce("var_long_rows", make1({3, 40000}), [](const Tensor& x) { return var(x, {1}); }, {1},
         [](const std::vector<double>& v) { return ref_var(v, 1); });
  reduce("var_all_long", make1({50000}), [](const Tensor& x) { return var(x); }, {},
         [](const std::vector<double>& v) { return ref_var(v, 1); });
  reduce("logsumexp_long_rows", make1({2, 50000}, -5, 5), [](const Tensor& x) { return logsumexp(x, {1}); }, {1},
         ref_lse);
  reduce("sum_long_rows", make1({2, 50000}), [](const Tensor& x) { return sum(x, {1}); }, {1}, ref_sum);
  reduce("max_values_long_rows", dmake({2, 40000}), [](const Tensor& x) { return max(x, 1).first; }, {1},
         [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); });
  reduce("max_indices_long_rows", dmake({2, 40000}), [](const Tensor& x) { return max(x, 1).second; }, {1},
         ref_arg_extremum<true>, DType::i64);
  reduce("amax_dim0_large", dmake({300, 200}), [](const Tensor& x) { return amax(x, {0}); }, {0},
         [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); });
  reduce("argmax_many_rows", dmake({20000, 10}), [](const Tensor& x) { return argmax(x, 1); }, {1},
         ref_arg_extremum<true>, DType::i64);
  add(row("gather_large", [](Generator& g) { return Inputs{rnd(g, {300, 500}), indices(g, {300, 200}, 500)}; },
          [](const Inputs& x) { return gather(x[0], 1, x[1]); },
          [](const std::vector<RefTensor>& x) {
            RefTensor out(x[1].shape);
            for (int64_t i = 0; i < out.numel(); ++i) out.v[i] = x[0].v[(i / 200) * 500 + static_cast<int64_t>(x[1].v[i])];
            return out;
          }));
  add(row("scatter_add_large_duplicates",
          [](Generator& g) { return Inputs{rnd(g, {50, 64}), indices(g, {2000, 64}, 50), rnd(g, {2000, 64})}; },
          [](const Inputs& x) { return scatter_add(x[0], 0, x[1], x[2]); },
          [](const std::vector<RefTensor>& x) {
            RefTensor out = x[0];
            for (int64_t i = 0; i < x[1].numel(); ++i)
              out.v[static_cast<int64_t>(x[1].v[i]) * 64 + i % 64] += x[2].v[i];
            return out;
          })
          .tol32(1e-4, 1e-5));
  add(row("index_select_large", [](Generator& g) { return Inputs{rnd(g, {1000, 64}), indices(g, {3000}, 1000)}; },
          [](const Inputs& x) { return index_select(x[0], 0, x[1]); },
          [](const std::vector<RefTensor>& x) {
            RefTensor out({3000, 64});
            for (int64_t i = 0; i < out.numel(); ++i) out.v[i] = x[0].v[static_cast<int64_t>(x[1].v[i / 64]) * 64 + i % 64];
            return out;
          }));
  add(row("topk_large", dmake({40, 2000}), [](const Inputs& x) { return topk(x[0], 10).first; },
          [](const std::vector<RefTensor>& x) {
            RefTensor out({40, 10});
            for (int64_t i = 0; i < 40; ++i) {
              std::vector<double> line(x[0].v.begin() + i * 2000, x[0].v.begin() + (i + 1) * 2000);
              std::sort(line.rbegin(), line.rend());
              std::copy(line.begin(), line.begin() + 10, out.v.begin() + i * 10);
            }
            return out;
          }));
  add(row("cat_large", [](Generator& g) { return Inputs{rnd(g, {200, 300}), rnd(g, {200, 100})}; },
          [](const Inputs& x) { return cat(x, 1); }, [](const std::vector<RefTensor>& x) { return ref_cat(x, 1); }));
  return r;
}

}  // namespace

KILN_OP_TABLE(ElementwiseOps, elementwise_rows());
KILN_OP_TABLE(LargeOps, large_rows());
KILN_OP_TABLE(ReductionOps, reduction_rows());
KILN_OP_TABLE(ShapeOps, shape_rows());
KILN_OP_TABLE(LinalgOps, linalg_rows());

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

// ---------------------------------------------------------------- the op registry (ops.def)

TEST(OpRegistry, NamesAreUniqueAndKindsNamed) {
  std::set<std::string_view> seen;
  for (const auto& op : ops::op_registry()) {
    EXPECT_TRUE(seen.insert(op.name).second) << "ops.def lists " << op.name << " twice";
    EXPECT_NE(ops::fusion_kind_name(op.fusion), "?") << op.name;
  }
  ASSERT_NE(ops::find_op("matmul"), nullptr);
  EXPECT_EQ(ops::find_op("matmul")->fusion, ops::FusionKind::output_fusable);
  EXPECT_EQ(ops::find_op("add")->fusion, ops::FusionKind::broadcast);
  EXPECT_EQ(ops::find_op("sum")->fusion, ops::FusionKind::reduction);
  EXPECT_EQ(ops::find_op("no_such_op"), nullptr);
}

// Rows that only the graph compiler creates (fused nodes) have no eager function.
namespace graph_only {
inline void fused_elementwise() {}
inline void if_else() {}  // control flow: bodies run by nested graph executors (kernels_control.cpp)
inline void loop() {}
inline void scan() {}
// sequences and optionals (kernels_sequence.cpp, sequence_map in kernels_control.cpp)
inline void sequence_empty() {}
inline void sequence_construct() {}
inline void sequence_insert() {}
inline void sequence_at() {}
inline void sequence_erase() {}
inline void sequence_length() {}
inline void split_to_sequence() {}
inline void concat_from_sequence() {}
inline void sequence_map() {}
inline void optional_construct() {}
inline void optional_has_element() {}
inline void optional_get_element() {}
inline void bernoulli() {}  // random, NumPy's stream (graph/kernels_random.cpp)
}  // namespace graph_only
namespace op_names {
using namespace kiln::ops;
using namespace graph_only;
}  // namespace op_names

TEST(OpRegistry, EveryRowNamesADeclaredOp) {
  // A using-declaration per row: a row whose name is not a kiln::ops function does not compile.
#define KILN_OP(name, kind) { using op_names::name; }
#include "kiln/ops/ops.def"
#undef KILN_OP
}

TEST(OpRegistry, EveryDeclaredOpHasARow) {
  // Scans the op headers for functions returning tensors; in-place forms (trailing _) are exempt.
  std::regex decl(R"(^(?:Tensor|std::pair<Tensor, Tensor>|std::vector<Tensor>) ([a-z0-9_]+)\()");
  int found = 0;
  for (const char* header : {"elementwise.h", "reduce.h", "shape_ops.h", "linalg.h", "nn_ops.h", "inference_ops.h",
                             "inference_nn.h", "quant_ops.h", "inference_extra.h", "indexing_extra.h",
                             "spatial_nd.h", "rnn_ops.h", "signal_ops.h", "training_ops.h", "vision_ops.h"}) {
    std::ifstream in(std::string(KILN_SOURCE_DIR) + "/src/kiln/ops/" + header);
    ASSERT_TRUE(in) << header;
    std::string line;
    std::smatch m;
    while (std::getline(in, line)) {
      if (!std::regex_search(line, m, decl) || m[1].str().back() == '_') continue;
      ++found;
      EXPECT_NE(ops::find_op(m[1].str()), nullptr) << header << " declares " << m[1] << " but ops.def has no row for it";
    }
  }
  EXPECT_GT(found, 60);
}
