// Helpers for tests that run one graph kernel on a hand-built node (signal, vision and training
// op tests): a node of a registry op with attributes, its kernel's outputs, closeness checks.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kiln/graph/kernels.h"
#include "kiln/ops/op_registry.h"

namespace kiln::graph::testing {

using Attrs = std::map<std::string, Attr, std::less<>>;

inline Node make_node(std::string_view op, Attrs attrs = {}) {
  Node n;
  n.op = ops::find_op(op);
  EXPECT_NE(n.op, nullptr) << op;
  n.name = std::string(op) + "_node";
  n.attrs = std::move(attrs);
  return n;
}

inline std::vector<Tensor> run(const Node& n, const std::vector<Tensor>& inputs) {
  KernelFn fn = kernel_table().find(n.op_name());
  EXPECT_NE(fn, nullptr) << n.op_name();
  return fn(n, inputs);
}

inline Tensor run1(const Node& n, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> out = run(n, inputs);
  EXPECT_EQ(out.size(), 1u);
  return out.at(0);
}

// got (any float dtype) against reference values, elementwise within tol.
inline void expect_near(const Tensor& got, const Shape& shape, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.shape(), shape);
  std::vector<double> g = got.to_vector<double>();
  ASSERT_EQ(g.size(), want.size());
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], want[i], tol) << "element " << i;
}

// f() throws a kiln::Error whose message contains every fragment.
template <typename F>
void expect_error(F f, const std::vector<std::string>& fragments) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << fragments.at(0) << "'";
  } catch (const Error& e) {
    for (const std::string& frag : fragments)
      EXPECT_NE(std::string(e.what()).find(frag), std::string::npos) << e.what();
  }
}

inline Tensor i64s(const std::vector<int64_t>& v) { return Tensor::from_vector<int64_t>(v); }
inline Tensor i64_scalar(int64_t v) { return Tensor::from_vector<int64_t>({v}, Shape{}); }

}  // namespace kiln::graph::testing
