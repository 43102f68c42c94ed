// The op test harness: each operator is one row (an OpCase) in a table, and every row gets the
// same checks: forward against an independent plain-loop reference (f64 tight, f32 within a
// tolerance), gradients against finite differences (f64), the same on non-contiguous inputs, and
// bad inputs rejected with a kiln::Error naming the op. Used by tests/ops/*_test.cpp:
//
//   std::vector<OpCase> rows() { return { OpCase("add", make, op, ref).bad("add", [] {...}), ... }; }
//   KILN_OP_TABLE(ElementwiseOps, rows());
//
// References work on RefTensor (a shape and std::vector<double>) and must never call kiln ops.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "kiln/autograd/gradcheck.h"
#include "kiln/core/error.h"
#include "kiln/core/grad_mode.h"
#include "kiln/core/rng.h"
#include "kiln/ops/ops.h"

namespace kiln {
inline void PrintTo(DType t, std::ostream* os) { *os << dtype_name(t); }
}  // namespace kiln

namespace kiln::optest {

// ---------------------------------------------------------------- reference-side tensors

// Values of a tensor as doubles in row-major order. `dtype` is f64 for any floating result;
// an integral or bool dtype says the result must have exactly that dtype (indices, comparisons).
struct RefTensor {
  Shape shape;
  std::vector<double> v;
  DType dtype = DType::f64;

  RefTensor() = default;
  explicit RefTensor(Shape s, DType dt = DType::f64) : shape(std::move(s)), v(numel_of(shape)), dtype(dt) {}

  static size_t numel_of(const Shape& s) {
    size_t n = 1;
    for (int64_t d : s) n *= static_cast<size_t>(d);
    return n;
  }
  int64_t numel() const { return static_cast<int64_t>(v.size()); }
  int64_t dim() const { return static_cast<int64_t>(shape.size()); }
  double& at(const std::vector<int64_t>& idx);
  double at(const std::vector<int64_t>& idx) const;
};

inline std::vector<int64_t> ref_strides(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

inline std::vector<int64_t> unravel(int64_t i, const Shape& s) {
  std::vector<int64_t> idx(s.size(), 0);
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = s[d] == 0 ? 0 : i % s[d];
    i = s[d] == 0 ? 0 : i / s[d];
  }
  return idx;
}

inline int64_t ravel(const std::vector<int64_t>& idx, const Shape& s) {
  int64_t off = 0;
  for (size_t d = 0; d < s.size(); ++d) off = off * s[d] + idx[d];
  return off;
}

inline double& RefTensor::at(const std::vector<int64_t>& idx) { return v[static_cast<size_t>(ravel(idx, shape))]; }
inline double RefTensor::at(const std::vector<int64_t>& idx) const {
  return v[static_cast<size_t>(ravel(idx, shape))];
}

inline int64_t ref_wrap(int64_t d, int64_t ndim) { return d < 0 ? d + ndim : d; }

// NumPy broadcasting of two shapes (the reference's own implementation).
inline Shape ref_broadcast(const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t x = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t y = i < n - b.size() ? 1 : b[i - (n - b.size())];
    out[i] = x == 1 ? y : x;
  }
  return out;
}

// t's value at an index of the broadcast shape `out` (t's shape aligned to the right).
inline double ref_bcast_at(const RefTensor& t, const std::vector<int64_t>& out_idx) {
  size_t lead = out_idx.size() - t.shape.size();
  int64_t off = 0;
  for (size_t d = 0; d < t.shape.size(); ++d) off = off * t.shape[d] + (t.shape[d] == 1 ? 0 : out_idx[lead + d]);
  return t.v[static_cast<size_t>(off)];
}

template <typename F>
RefTensor ref_map(const RefTensor& a, F f, DType dt = DType::f64) {
  RefTensor out(a.shape, dt);
  for (size_t i = 0; i < a.v.size(); ++i) out.v[i] = f(a.v[i]);
  return out;
}

template <typename F>
RefTensor ref_zip(const RefTensor& a, const RefTensor& b, F f, DType dt = DType::f64) {
  RefTensor out(ref_broadcast(a.shape, b.shape), dt);
  for (int64_t i = 0; i < out.numel(); ++i) {
    auto idx = unravel(i, out.shape);
    out.v[i] = f(ref_bcast_at(a, idx), ref_bcast_at(b, idx));
  }
  return out;
}

template <typename F>
RefTensor ref_zip3(const RefTensor& a, const RefTensor& b, const RefTensor& c, F f) {
  RefTensor out(ref_broadcast(ref_broadcast(a.shape, b.shape), c.shape));
  for (int64_t i = 0; i < out.numel(); ++i) {
    auto idx = unravel(i, out.shape);
    out.v[i] = f(ref_bcast_at(a, idx), ref_bcast_at(b, idx), ref_bcast_at(c, idx));
  }
  return out;
}

// Reduces `dims` (empty: all) with f(values), values listed in row-major order of the reduced
// dims (so for one dim, values[k] is element k along it).
template <typename F>
RefTensor ref_reduce(const RefTensor& x, std::vector<int64_t> dims, bool keepdim, F f, DType dt = DType::f64) {
  std::vector<bool> red(x.shape.size(), dims.empty());
  for (int64_t d : dims) red[static_cast<size_t>(ref_wrap(d, x.dim()))] = true;
  Shape kept, out_shape;
  for (size_t d = 0; d < x.shape.size(); ++d) {
    kept.push_back(red[d] ? 1 : x.shape[d]);
    if (!red[d]) out_shape.push_back(x.shape[d]);
  }
  std::vector<std::vector<double>> buckets(RefTensor::numel_of(kept));
  for (int64_t i = 0; i < x.numel(); ++i) {
    auto idx = unravel(i, x.shape);
    for (size_t d = 0; d < idx.size(); ++d)
      if (red[d]) idx[d] = 0;
    buckets[static_cast<size_t>(ravel(idx, kept))].push_back(x.v[i]);
  }
  RefTensor out(keepdim ? kept : out_shape, dt);
  for (size_t k = 0; k < buckets.size(); ++k) out.v[k] = f(buckets[k]);
  return out;
}

inline RefTensor to_ref(const Tensor& t) {
  RefTensor r(t.shape(), is_floating(t.dtype()) ? DType::f64 : t.dtype());
  r.v = t.to_vector<double>();
  return r;
}

// ---------------------------------------------------------------- input makers (f64)

inline Tensor rnd(Generator& g, const Shape& s, double lo = -1.0, double hi = 1.0) {
  return uniform(s, lo, hi, g, DType::f64);
}
// |v| in [gap, hi] with a random sign: keeps inputs away from kinks (relu, abs) and poles.
inline Tensor rnd_away(Generator& g, const Shape& s, double gap = 0.1, double hi = 1.0) {
  Tensor mag = uniform(s, gap, hi, g, DType::f64), sign = uniform(s, -1.0, 1.0, g, DType::f64);
  double* m = mag.data<double>();
  const double* sg = sign.data<double>();
  for (int64_t i = 0; i < mag.numel(); ++i) m[i] = sg[i] < 0 ? -m[i] : m[i];
  return mag;
}
// Distinct values at least `spacing` apart in random order: no ties for max/min/sort, and
// finite differences never cross a tie.
inline Tensor distinct(Generator& g, const Shape& s, double spacing = 0.1) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = (static_cast<double>(i) - n / 2.0) * spacing;
  for (int64_t i = n - 1; i > 0; --i) std::swap(v[i], v[g.next_u64() % static_cast<uint64_t>(i + 1)]);
  return Tensor::from_vector<double>(v, s);
}
inline Tensor indices(Generator& g, const Shape& s, int64_t hi) {  // i64 in [0, hi)
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<int64_t>(g.next_u64() % static_cast<uint64_t>(hi));
  return Tensor::from_vector<int64_t>(v, s);
}
inline Tensor bools(Generator& g, const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  Tensor t = Tensor::empty(s, DType::b8);
  for (int64_t i = 0; i < n; ++i) t.data<bool>()[i] = (g.next_u64() & 1) != 0;
  return t;
}

// ---------------------------------------------------------------- the row

using Inputs = std::vector<Tensor>;
using MakeFn = std::function<Inputs(Generator&)>;
using OpFn = std::function<Tensor(const Inputs&)>;
using RefFn = std::function<RefTensor(const std::vector<RefTensor>&)>;

struct BadInput {
  std::string must_mention;     // a substring the error message must contain (usually the op name)
  std::function<void()> call;   // must throw a kiln::Error
};

struct OpCase {
  std::string name;  // unique in its table; [A-Za-z0-9_] after sanitising
  MakeFn make;       // builds the inputs in f64 (index/bool inputs in their own dtype)
  OpFn op;
  RefFn ref;
  std::vector<BadInput> bad_inputs;
  double f64_atol = 1e-10, f64_rtol = 1e-10;
  double f32_atol = 1e-5, f32_rtol = 1e-5;
  double grad_eps = 1e-6, grad_atol = 1e-6, grad_rtol = 1e-5;
  bool check_grad = true;     // when the output is floating
  bool check_f32 = true;
  bool check_strided = true;
  bool keeps_dtype = true;    // f64 inputs give an f64 result and f32 inputs an f32 one
  std::vector<size_t> no_grad;  // floating inputs not to differentiate (e.g. running statistics)
  uint64_t seed = 0;            // 0: derived from the name

  OpCase() = default;
  OpCase(std::string n, MakeFn m, OpFn o, RefFn r)
      : name(std::move(n)), make(std::move(m)), op(std::move(o)), ref(std::move(r)) {}

  OpCase& bad(std::string must_mention, std::function<void()> call) {
    bad_inputs.push_back({std::move(must_mention), std::move(call)});
    return *this;
  }
  OpCase& tol64(double atol, double rtol) { f64_atol = atol; f64_rtol = rtol; return *this; }
  OpCase& tol32(double atol, double rtol) { f32_atol = atol; f32_rtol = rtol; return *this; }
  OpCase& grad_tol(double eps, double atol, double rtol) {
    grad_eps = eps; grad_atol = atol; grad_rtol = rtol; return *this;
  }
  OpCase& no_gradient() { check_grad = false; return *this; }
  OpCase& no_f32() { check_f32 = false; return *this; }
  OpCase& no_strided() { check_strided = false; return *this; }
  OpCase& changes_dtype() { keeps_dtype = false; return *this; }
  OpCase& skip_grad_for(std::vector<size_t> inputs) { no_grad = std::move(inputs); return *this; }
};

inline void PrintTo(const OpCase& c, std::ostream* os) { *os << c.name; }

inline std::string case_name(const ::testing::TestParamInfo<OpCase>& info) {
  std::string s = info.param.name;
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

// ---------------------------------------------------------------- the checks

inline uint64_t case_seed(const OpCase& c) {
  return c.seed != 0 ? c.seed : std::hash<std::string>{}(c.name) | 1;
}

// Compares an op's output with the reference: dtype class, shape, then every value.
inline void expect_matches(const Tensor& got, const RefTensor& want, double atol, double rtol, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what << ": op returned an undefined tensor";
  if (is_floating(want.dtype)) {
    EXPECT_TRUE(is_floating(got.dtype())) << what << ": expected a floating result, got " << dtype_name(got.dtype());
  } else {
    EXPECT_EQ(got.dtype(), want.dtype) << what << ": expected dtype " << dtype_name(want.dtype) << ", got "
                                       << dtype_name(got.dtype());
  }
  ASSERT_EQ(got.shape(), want.shape) << what << ": shape";
  std::vector<double> g = got.to_vector<double>();
  int64_t bad = 0;
  std::string first;
  for (size_t i = 0; i < g.size(); ++i) {
    double a = g[i], b = want.v[i];
    bool ok = (std::isnan(a) && std::isnan(b)) || a == b || std::abs(a - b) <= atol + rtol * std::abs(b);
    if (!ok && bad++ == 0)
      first = detail::concat("element ", i, " ", shape_str(unravel(static_cast<int64_t>(i), want.shape)), ": got ",
                             a, ", reference ", b);
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << g.size() << " elements differ; first at " << first;
}

inline std::vector<RefTensor> to_refs(const Inputs& xs) {
  std::vector<RefTensor> r;
  for (const auto& x : xs) r.push_back(x.defined() ? to_ref(x) : RefTensor());
  return r;
}

inline Inputs to_f32(const Inputs& xs) {
  Inputs r;
  for (const auto& x : xs)
    r.push_back(x.defined() && is_floating(x.dtype()) ? to_dtype_raw(x, DType::f32) : x);
  return r;
}

// (1) forward against the reference, in f64 and in f32 (the f32 reference is computed from the
// f32-rounded inputs so only the op's own rounding is measured).
inline void check_forward(const OpCase& c) {
  Generator g(case_seed(c));
  Inputs xs = c.make(g);
  Tensor out = c.op(xs);
  expect_matches(out, c.ref(to_refs(xs)), c.f64_atol, c.f64_rtol, c.name + " (f64)");
  if (c.keeps_dtype && out.defined() && is_floating(out.dtype())) {
    EXPECT_EQ(out.dtype(), DType::f64) << c.name << ": f64 inputs should give an f64 result";
  }
  if (!c.check_f32) return;
  Inputs xs32 = to_f32(xs);
  Tensor out32 = c.op(xs32);
  expect_matches(out32, c.ref(to_refs(xs32)), c.f32_atol, c.f32_rtol, c.name + " (f32)");
  if (c.keeps_dtype && out.defined() && out.dtype() == DType::f64) {
    EXPECT_EQ(out32.dtype(), DType::f32) << c.name << ": f32 result dtype";
  }
}

inline bool differentiable(const OpCase& c, const Inputs& xs, size_t i) {
  if (!xs[i].defined() || xs[i].dtype() != DType::f64) return false;
  return std::find(c.no_grad.begin(), c.no_grad.end(), i) == c.no_grad.end();
}

// Runs gradcheck with `view` applied to each (leaf) input before the op.
inline void run_gradcheck(const OpCase& c, const Inputs& leaves,
                          const std::function<Tensor(size_t, const Tensor&)>& view, const std::string& what) {
  Inputs in;
  bool any = false;
  for (size_t i = 0; i < leaves.size(); ++i) {
    Tensor x = leaves[i].defined() ? leaves[i].detach() : Tensor();
    if (differentiable(c, leaves, i)) {
      x.set_requires_grad(true);
      any = true;
    }
    in.push_back(x);
  }
  if (!any) return;
  auto f = [&](const Inputs& ys) {
    Inputs v;
    for (size_t i = 0; i < ys.size(); ++i) v.push_back(ys[i].defined() ? view(i, ys[i]) : ys[i]);
    return c.op(v);
  };
  auto r = autograd::gradcheck(f, in, c.grad_eps, c.grad_atol, c.grad_rtol);
  EXPECT_TRUE(r.ok) << what << ": " << r.message << " (max abs error " << r.max_abs_error << ")";
}

// (2) gradients by finite differences, f64.
inline void check_gradient(const OpCase& c) {
  if (!c.check_grad) return;
  Generator g(case_seed(c));
  Inputs xs = c.make(g);
  {
    NoGradGuard ng;
    Tensor out = c.op(xs);
    if (!out.defined() || !is_floating(out.dtype())) return;
  }
  run_gradcheck(c, xs, [](size_t, const Tensor& x) { return x; }, c.name + " gradient");
}

// A non-contiguous tensor with the same values as x: for >= 2 dims the data is stored
// transposed in its last two dims (and viewed back), for 1 dim every other element of a buffer
// starting at offset 1. `stored` is that buffer (contiguous), `restore` maps it back differentiably.
struct StridedInput {
  Tensor stored;
  Tensor view;
  int kind = 0;  // 0: unchanged, 1: transposed, 2: every other element
};

inline StridedInput make_strided(const Tensor& x) {
  StridedInput s;
  s.stored = x;
  s.view = x;
  if (!x.defined() || x.numel() < 2) return s;
  if (x.dim() >= 2) {
    int64_t n = x.dim();
    Shape ts = x.shape();
    std::swap(ts[n - 1], ts[n - 2]);
    Strides xs = x.strides();
    std::swap(xs[n - 1], xs[n - 2]);
    s.stored = clone_raw(x.as_strided(ts, xs, x.offset()));
    Strides st = s.stored.strides();
    std::swap(st[n - 1], st[n - 2]);
    s.view = s.stored.as_strided(x.shape(), st, 0);
    s.kind = 1;
  } else if (x.dim() == 1) {
    int64_t n = x.numel();
    s.stored = Tensor::zeros({2 * n + 1}, x.dtype());
    copy_into(s.stored.as_strided({n}, {2}, 1), x);
    s.view = s.stored.as_strided({n}, {2}, 1);
    s.kind = 2;
  }
  return s;
}

inline Tensor restore_strided(int kind, const Tensor& stored) {
  if (kind == 1) return ops::transpose(stored, -1, -2);
  if (kind == 2) return ops::slice(stored, 0, 1, stored.numel(), 2);
  return stored;
}

// (3) forward and gradient again with every input non-contiguous.
inline void check_strided(const OpCase& c) {
  if (!c.check_strided) return;
  Generator g(case_seed(c));
  Inputs xs = c.make(g);
  std::vector<StridedInput> st;
  Inputs views, stored;
  std::vector<int> kinds;
  for (const auto& x : xs) {
    st.push_back(make_strided(x));
    views.push_back(st.back().view);
    stored.push_back(st.back().stored);
    kinds.push_back(st.back().kind);
  }
  Tensor out = c.op(views);
  expect_matches(out, c.ref(to_refs(xs)), c.f64_atol, c.f64_rtol, c.name + " (f64, strided inputs)");
  if (c.check_f32) {
    Inputs v32;
    for (size_t i = 0; i < xs.size(); ++i) {
      if (!xs[i].defined() || !is_floating(xs[i].dtype())) {
        v32.push_back(views[i]);
        continue;
      }
      StridedInput s = make_strided(to_dtype_raw(xs[i], DType::f32));
      v32.push_back(s.view);
    }
    expect_matches(c.op(v32), c.ref(to_refs(to_f32(xs))), c.f32_atol, c.f32_rtol, c.name + " (f32, strided inputs)");
  }
  if (!c.check_grad || !out.defined() || !is_floating(out.dtype())) return;
  run_gradcheck(c, stored, [&kinds](size_t i, const Tensor& x) { return restore_strided(kinds[i], x); },
                c.name + " gradient (strided inputs)");
}

// (5) bad inputs are rejected with a kiln::Error whose message names the op.
inline void check_bad_inputs(const OpCase& c) {
  for (size_t k = 0; k < c.bad_inputs.size(); ++k) {
    const BadInput& b = c.bad_inputs[k];
    try {
      b.call();
      ADD_FAILURE() << c.name << ": bad input #" << k << " was accepted";
    } catch (const kiln::Error& e) {
      EXPECT_NE(std::string(e.what()).find(b.must_mention), std::string::npos)
          << c.name << ": bad input #" << k << ": message \"" << e.what() << "\" does not mention \""
          << b.must_mention << "\"";
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.name << ": bad input #" << k << " threw a non-kiln exception: " << e.what();
    }
  }
}

}  // namespace kiln::optest

// Defines the parameterised tests Suite.{Forward,Gradient,Strided,BadInputs} over `rows_expr`
// (a std::vector<OpCase>). Use once per table, at namespace scope.
#define KILN_OP_TABLE(Suite, rows_expr)                                                   \
  class Suite : public ::testing::TestWithParam<::kiln::optest::OpCase> {};             \
  TEST_P(Suite, Forward) { ::kiln::optest::check_forward(GetParam()); }                 \
  TEST_P(Suite, Gradient) { ::kiln::optest::check_gradient(GetParam()); }               \
  TEST_P(Suite, Strided) { ::kiln::optest::check_strided(GetParam()); }                 \
  TEST_P(Suite, BadInputs) { ::kiln::optest::check_bad_inputs(GetParam()); }            \
  INSTANTIATE_TEST_SUITE_P(Ops, Suite, ::testing::ValuesIn(rows_expr), ::kiln::optest::case_name)
