// Helpers for the optimisation-pass tests: build the same graph twice (one stays unoptimised and
// is the oracle), run both on the same random inputs, compare outputs and count ops.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "kiln/core/rng.h"
#include "kiln/graph/executor.h"
#include "kiln/graph/passes.h"

namespace kiln::graph::testing {

using Attrs = std::map<std::string, Attr, std::less<>>;
using Builder = std::function<void(Graph&)>;

inline int count_op(const Graph& g, std::string_view op) {
  int n = 0;
  for (const auto& node : g.nodes()) n += node->op_name() == op ? 1 : 0;
  return n;
}

// A node with one output value of the given name (add_op's name argument names the node).
inline Value* named_op(Graph& g, std::string name, std::string_view op, std::vector<Value*> in, Attrs a = {},
                       DType dtype = DType::f32, std::optional<SymShape> shape = std::nullopt) {
  Value* v = g.add_value(std::move(name), dtype, std::move(shape));
  g.add_node(op, std::move(in), {v}, std::move(a));
  return v;
}

inline Tensor f32(const std::vector<float>& v, const Shape& shape) { return Tensor::from_vector<float>(v, shape); }
inline Tensor i64(const std::vector<int64_t>& v) { return Tensor::from_vector<int64_t>(v); }

// Seeded random inputs matching the graph's declared input shapes (all fixed).
inline std::vector<Tensor> random_inputs(const Graph& g, uint64_t seed = 7) {
  Generator gen(seed);
  std::vector<Tensor> in;
  for (const Value* v : g.inputs()) {
    auto s = concrete_shape(*v->shape);
    EXPECT_TRUE(s.has_value()) << v->name;
    in.push_back(to_dtype_raw(randn(*s, gen), v->dtype));
  }
  return in;
}

// Elementwise comparison: bitwise when tol == 0, else |a - b| <= tol * (1 + |b|).
inline void expect_close(const std::vector<Tensor>& got, const std::vector<Tensor>& want, double tol,
                         const std::string& what = "") {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t k = 0; k < got.size(); ++k) {
    ASSERT_EQ(got[k].shape(), want[k].shape()) << what << " output " << k;
    ASSERT_EQ(got[k].dtype(), want[k].dtype()) << what << " output " << k;
    std::vector<double> a = got[k].to_vector<double>(), b = want[k].to_vector<double>();
    int reported = 0;
    for (size_t i = 0; i < a.size() && reported < 5; ++i) {
      bool same = (std::isnan(a[i]) && std::isnan(b[i])) || a[i] == b[i];
      if (tol == 0 ? !same : !(std::fabs(a[i] - b[i]) <= tol * (1 + std::fabs(b[i])) || same)) {
        ADD_FAILURE() << what << " output " << k << " element " << i << ": " << a[i] << " vs " << b[i];
        ++reported;
      }
    }
  }
}

// Builds the graph twice, applies `pass` to the second, checks it verifies, and compares both on
// random inputs. Returns the optimised graph for structural checks.
inline Graph check_pass(const Builder& build, const std::function<void(Graph&)>& pass, double tol,
                        const std::string& what = "", uint64_t seed = 7) {
  Graph ref, opt;
  build(ref);
  build(opt);
  pass(opt);
  verify(opt, what);
  std::vector<Tensor> in = random_inputs(ref, seed);
  std::vector<Tensor> want = Executor(ref).run(in);
  std::vector<Tensor> got = Executor(opt).run(in);
  expect_close(got, want, tol, what);
  for (size_t k = 0; k < ref.outputs().size(); ++k) EXPECT_EQ(opt.outputs()[k]->name, ref.outputs()[k]->name);
  for (const Value* out : opt.outputs()) EXPECT_NE(out->producer, nullptr) << "output %" << out->name;
  return opt;
}

inline Graph check_optimize(const Builder& build, double tol, PassOptions o = {}) {
  o.verify = true;
  return check_pass(build, [&](Graph& g) { optimize(g, o); }, tol, "optimize");
}

}  // namespace kiln::graph::testing
