// The static graph IR: values (with dtype and a possibly symbolic shape) produced and consumed by
// nodes, each node one operator of the ops registry (ops.def) with named attributes. A graph owns
// its values and nodes; nodes are kept in a topological order that passes preserve.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kiln/core/tensor.h"
#include "kiln/ops/op_registry.h"

namespace kiln::graph {

// One dimension: a fixed size, or a named symbol (a batch "N") bound when the graph runs, or
// unknown (size -1, no symbol) where nothing could infer it.
struct Dim {
  int64_t size = -1;
  std::string symbol;

  static Dim fixed(int64_t n) { return Dim{n, {}}; }
  static Dim named(std::string s) { return Dim{-1, std::move(s)}; }
  bool is_fixed() const { return size >= 0; }
  bool operator==(const Dim&) const = default;
};
using SymShape = std::vector<Dim>;

SymShape fixed_shape(const Shape& shape);
// The concrete shape when every dimension is fixed.
std::optional<Shape> concrete_shape(const SymShape& shape);
std::string sym_shape_str(const SymShape& shape);  // "[N, 1, 28, 28]", "[?, 10]"

using Attr = std::variant<int64_t, double, std::string, std::vector<int64_t>, std::vector<double>,
                          std::vector<std::string>, Tensor>;
std::string attr_str(const Attr& a);

struct Node;
class Graph;

// What a value holds. Most values are tensors; imported ONNX graphs also carry sequences (a list
// of tensors of one dtype, any shapes) and optionals (a tensor or sequence, or nothing). For a
// non-tensor value, Value::dtype is the element dtype and Value::shape the elements' shape when
// all elements share one (usually absent). At run time they are graph::RtValue (kernels.h).
enum class ValueKind : uint8_t { tensor, sequence, optional_tensor, optional_sequence };

struct Value {
  int64_t id = 0;
  std::string name;                 // unique in its graph
  DType dtype = DType::f32;
  std::optional<SymShape> shape;    // absent: rank unknown
  Node* producer = nullptr;         // null for graph inputs and constants
  int producer_output = 0;
  Tensor constant;                  // defined for initializers and folded constants
  ValueKind kind = ValueKind::tensor;

  bool is_constant() const { return constant.defined(); }
  bool is_tensor() const { return kind == ValueKind::tensor; }
};

// "f32[2, 3]", "seq<f32>", "opt<f32[...]>", "opt<seq<f32>>" (the text form's value types).
std::string type_str(const Value& v);
// The ops whose kernels work on sequences and optionals (the sequence_* and optional_* rows of
// ops.def), and whether a node runs on them: such an op, or any input or output not a tensor.
// The executor runs these nodes with their value kernels (kernels.h) and the memory planner
// leaves their outputs unplanned and their tensor inputs out of the arena (a sequence may hold
// them past their last direct use).
bool is_value_op(std::string_view op);
bool runs_on_values(const Node& n);

struct Node {
  const ops::OpInfo* op = nullptr;  // never null: nodes are ops of the registry
  std::string name;                 // unique in its graph (ONNX node name, or generated)
  std::vector<Value*> inputs;       // nullptr marks an absent optional input
  std::vector<Value*> outputs;
  std::map<std::string, Attr, std::less<>> attrs;
  // Bodies of control-flow nodes (if_else: "then_branch", "else_branch"; loop, scan: "body"),
  // keyed by their ONNX attribute name. A body never reads a value of an enclosing graph
  // directly: each outer value it needs is an extra input of the node and of the body (the
  // node's last "num_captured" inputs, kernels_control.cpp), so every pass sees all uses of a
  // value in the graph that owns it without knowing about bodies.
  std::map<std::string, std::shared_ptr<Graph>, std::less<>> subgraphs;

  std::string_view op_name() const { return op->name; }
  bool has_attr(std::string_view key) const { return attrs.find(key) != attrs.end(); }
  // Typed attribute reads; the default-less forms throw a ValueError naming node and attribute.
  int64_t attr_int(std::string_view key) const;
  int64_t attr_int(std::string_view key, int64_t fallback) const;
  double attr_float(std::string_view key) const;
  double attr_float(std::string_view key, double fallback) const;
  const std::string& attr_string(std::string_view key) const;
  std::string attr_string(std::string_view key, std::string_view fallback) const;
  const std::vector<int64_t>& attr_ints(std::string_view key) const;
  std::vector<int64_t> attr_ints(std::string_view key, std::vector<int64_t> fallback) const;
  const std::vector<double>& attr_floats(std::string_view key) const;
  const Tensor& attr_tensor(std::string_view key) const;
  const Graph& subgraph(std::string_view key) const;  // throws a ValueError naming node and key
  // The node's input i, or nullptr when it is absent (index past the end included).
  Value* input(size_t i) const { return i < inputs.size() ? inputs[i] : nullptr; }
};

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  Graph(Graph&&) = default;
  Graph& operator=(Graph&&) = default;

  // A new value. An empty name gets a generated unique one ("v17"); a taken name throws.
  Value* add_value(std::string name, DType dtype, std::optional<SymShape> shape = std::nullopt);
  Value* add_input(std::string name, DType dtype, SymShape shape);
  Value* add_constant(std::string name, Tensor value);  // dtype and shape from the tensor
  void mark_output(Value* v) { outputs_.push_back(v); }

  // Appends a node of registry op `op` (throws NotImplementedError naming it when the registry
  // has no such op). Outputs are given values (already created, unproduced). A name already
  // taken by another node gets a numeric suffix; an empty one is generated from the op.
  Node* add_node(std::string_view op, std::vector<Value*> inputs, std::vector<Value*> outputs,
                 std::map<std::string, Attr, std::less<>> attrs = {}, std::string name = {});
  // Convenience: one new output value of dtype/shape given (shape may be unknown).
  Value* add_op(std::string_view op, std::vector<Value*> inputs, std::map<std::string, Attr, std::less<>> attrs,
                DType out_dtype, std::optional<SymShape> out_shape = std::nullopt, std::string name = {});

  const std::vector<Value*>& inputs() const { return inputs_; }
  const std::vector<Value*>& outputs() const { return outputs_; }
  std::vector<Value*>& mutable_outputs() { return outputs_; }
  std::vector<Value*>& mutable_inputs() { return inputs_; }
  const std::vector<std::unique_ptr<Node>>& nodes() const { return nodes_; }
  std::vector<std::unique_ptr<Node>>& mutable_nodes() { return nodes_; }
  const std::vector<std::unique_ptr<Value>>& values() const { return values_; }

  Value* find_value(std::string_view name) const;  // nullptr when absent
  void rename(Value* v, std::string name);          // throws when the name is taken
  // Replaces every use of `from` (node inputs and graph outputs) by `to`.
  void replace_uses(Value* from, Value* to);
  // Removes nodes whose outputs are unused and values no node or output references, then
  // renumbers nothing: ids stay stable. Returns how many nodes were removed.
  size_t remove_unused();
  // Number of uses of each value (by node inputs and graph outputs), indexed by value id.
  std::vector<int> use_counts() const;

  std::string unique_name(std::string_view stem);
  int64_t opset = 17;      // the ONNX opset the graph was imported with / exports as
  std::string producer;    // free text ("kiln 0.1.0", "pytorch 1.13")

 private:
  std::vector<std::unique_ptr<Value>> values_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<Value*> inputs_, outputs_;
  std::map<std::string, Value*, std::less<>> by_name_;
  std::set<std::string, std::less<>> node_names_;  // add_node makes names unique with a suffix
  int64_t next_id_ = 0;
  int64_t name_counter_ = 0;
};

// Readable text form: one line per input, constant (shape only) and node; a node's subgraphs
// follow it, indented.
std::string to_text(const Graph& g);
// Structural checks: kinds (a node of an op that needs a sequence, optional or tensor in a slot
// gets one; ops outside is_value_op and control flow read and make tensors only); every node input is a graph input, a constant or an earlier node's output;
// each value is produced once; outputs exist; names unique; subgraphs pass the same checks on
// their own (so a body that reads an outer value without capturing it fails). Throws
// InternalError naming the offending node (after a pass) with `context` (the pass name) in the
// message.
void verify(const Graph& g, std::string_view context);

}  // namespace kiln::graph
