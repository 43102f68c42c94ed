// Import of ONNX control flow with outer-scope reads (onnx_subgraph.h): a Loop nested in an If,
// whose bodies read main-graph values by name (through an Identity alias, and an initializer).
// Results are checked against the recurrence computed here; export refuses control flow.
#include <gtest/gtest.h>

#include <onnx/onnx_pb.h>

#include "kiln/core/error.h"
#include "kiln/graph/compiled.h"
#include "kiln/graph/executor.h"
#include "kiln/io/onnx/onnx_export.h"
#include "kiln/io/onnx/onnx_import.h"
#include "kiln/io/onnx/tensor_proto.h"

namespace kiln::io {
namespace {

void typed(::onnx::ValueInfoProto* vi, const std::string& name, int elem, std::vector<int64_t> dims) {
  vi->set_name(name);
  auto* t = vi->mutable_type()->mutable_tensor_type();
  t->set_elem_type(elem);
  auto* s = t->mutable_shape();
  for (int64_t d : dims) s->add_dim()->set_dim_value(d);
}

::onnx::NodeProto* node(::onnx::GraphProto& g, const std::string& op, std::vector<std::string> in,
                        std::vector<std::string> out) {
  auto* n = g.add_node();
  n->set_op_type(op);
  n->set_name(out.empty() ? op : out[0]);
  for (auto& i : in) n->add_input(i);
  for (auto& o : out) n->add_output(o);
  return n;
}

void graph_attr(::onnx::NodeProto* n, const std::string& name, const ::onnx::GraphProto& g) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::GRAPH);
  *a->mutable_g() = g;
}

constexpr int kF32 = ::onnx::TensorProto::FLOAT, kI64 = ::onnx::TensorProto::INT64, kBool = ::onnx::TensorProto::BOOL;

// y = If(c, then: Loop(m, "", x_alias){s += x + k}, else: x_alias - k), k an initializer.
std::string model_bytes() {
  ::onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(13);
  ::onnx::GraphProto& g = *model.mutable_graph();
  g.set_name("main");
  typed(g.add_input(), "c", kBool, {});
  typed(g.add_input(), "m", kI64, {});
  typed(g.add_input(), "x", kF32, {2});
  *g.add_initializer() = tensor_to_proto(Tensor::from_vector<float>({0.25f, -1.0f}, {2}), "k");
  node(g, "Identity", {"x"}, {"x_alias"});

  ::onnx::GraphProto body;
  body.set_name("body");
  typed(body.add_input(), "i", kI64, {});
  typed(body.add_input(), "cond_in", kBool, {});
  typed(body.add_input(), "s", kF32, {2});
  node(body, "Identity", {"cond_in"}, {"cond_out"});
  node(body, "Add", {"s", "x"}, {"sx"});      // x: two levels out
  node(body, "Add", {"sx", "k"}, {"s_out"});  // k: an outer initializer
  typed(body.add_output(), "cond_out", kBool, {});
  typed(body.add_output(), "s_out", kF32, {2});

  ::onnx::GraphProto then_b;
  then_b.set_name("then");
  graph_attr(node(then_b, "Loop", {"m", "", "x_alias"}, {"loop_out"}), "body", body);
  typed(then_b.add_output(), "loop_out", kF32, {2});
  ::onnx::GraphProto else_b;
  else_b.set_name("else");
  node(else_b, "Sub", {"x_alias", "k"}, {"else_out"});
  typed(else_b.add_output(), "else_out", kF32, {2});

  auto* n_if = node(g, "If", {"c"}, {"y"});
  graph_attr(n_if, "then_branch", then_b);
  graph_attr(n_if, "else_branch", else_b);
  typed(g.add_output(), "y", kF32, {2});
  std::string bytes;
  EXPECT_TRUE(model.SerializeToString(&bytes));
  return bytes;
}

TEST(OnnxControlFlow, NestedBodiesReadOuterValuesThroughCaptures) {
  graph::Graph g = import_onnx_bytes(model_bytes(), "nested.onnx");
  ASSERT_EQ(g.nodes().size(), 1u) << graph::to_text(g);  // Identity is an alias, no node
  const graph::Node& n_if = *g.nodes()[0];
  // m, and x with its alias as one value, are captured; k, a constant, is copied into the bodies.
  ASSERT_EQ(n_if.inputs.size(), 3u) << graph::to_text(g);
  EXPECT_EQ(n_if.inputs[1]->name, "m");
  EXPECT_EQ(n_if.inputs[2]->name, "x");
  EXPECT_EQ(n_if.attr_int("num_captured"), 2);
  const graph::Node& loop = *n_if.subgraph("then_branch").nodes()[0];
  EXPECT_EQ(loop.op_name(), "loop");
  EXPECT_EQ(loop.attr_int("num_captured"), 1);  // x, captured again from the branch

  const std::vector<float> x = {1.5f, 2.0f}, k = {0.25f, -1.0f};
  for (int64_t m : {0, 1, 3}) {
    std::vector<float> want = x;
    for (int64_t i = 0; i < m; ++i)
      for (size_t j = 0; j < 2; ++j) want[j] += x[j] + k[j];
    std::vector<Tensor> in = {Tensor::scalar(1.0, DType::b8), Tensor::scalar(static_cast<double>(m), DType::i64),
                              Tensor::from_vector<float>(x, {2})};
    graph::Graph gi = import_onnx_bytes(model_bytes(), "nested.onnx");
    std::vector<Tensor> plain = graph::Executor(gi).run(in);
    graph::Compiled compiled(std::move(gi));
    std::vector<Tensor> fast = compiled.run(in);
    for (const auto* r : {&plain, &fast}) {
      std::vector<float> got = (*r)[0].to_vector<float>();
      ASSERT_EQ(got.size(), 2u);
      for (size_t j = 0; j < 2; ++j) EXPECT_FLOAT_EQ(got[j], want[j]) << "m=" << m;
    }
  }
  std::vector<Tensor> in = {Tensor::scalar(0.0, DType::b8), Tensor::scalar(5.0, DType::i64),
                            Tensor::from_vector<float>(x, {2})};
  std::vector<float> got = graph::Executor(g).run(in)[0].to_vector<float>();
  EXPECT_FLOAT_EQ(got[0], x[0] - k[0]);
  EXPECT_FLOAT_EQ(got[1], x[1] - k[1]);
}

TEST(OnnxControlFlow, ExportRefusesControlFlowNamingTheOp) {
  graph::Graph g = import_onnx_bytes(model_bytes(), "nested.onnx");
  try {
    export_onnx(g);
    FAIL() << "exported an if_else node";
  } catch (const NotImplementedError& e) {
    EXPECT_NE(std::string(e.what()).find("(if_else): cannot export control flow"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln::io
