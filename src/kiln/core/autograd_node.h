// The nodes of the autograd tape. They live in core because every tensor may point at one; the
// ops layer creates them (each op's backward sits beside its forward), and the autograd layer's
// engine walks them. A node receives one gradient per forward output and returns one gradient
// per forward input (its next_edges), in the same order.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln {

class Node;

struct Edge {
  std::shared_ptr<Node> node;  // null when that input does not need a gradient
  uint32_t input_nr = 0;       // which output of `node` the input was
};

class Node {
 public:
  explicit Node(std::string name);
  virtual ~Node() = default;

  // grads[i] is the gradient of forward output i (undefined when nothing flowed into it);
  // returns one gradient per next edge (undefined where next_edges[i].node is null).
  virtual std::vector<Tensor> apply(const std::vector<Tensor>& grads) = 0;
  // Frees saved tensors after a backward without retain_graph.
  virtual void release_saved() {}

  const std::string& name() const { return name_; }
  uint64_t sequence_nr() const { return sequence_nr_; }

  std::vector<Edge> next_edges;
  std::vector<Shape> output_shapes;  // for materialising zero gradients of unused outputs
  std::vector<DType> output_dtypes;

 private:
  std::string name_;
  uint64_t sequence_nr_;
};

// The sink for a leaf tensor: the engine adds whatever reaches it into the leaf's .grad.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(const std::shared_ptr<TensorImpl>& leaf) : Node("AccumulateGrad"), leaf_(leaf) {}
  std::vector<Tensor> apply(const std::vector<Tensor>&) override { return {}; }
  std::shared_ptr<TensorImpl> leaf() const { return leaf_.lock(); }

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

// A tensor kept for backward. It holds a detached handle (so an op's saved output never points
// back at its own node: no reference cycle) and the storage version at save time, so a later
// in-place write is caught instead of silently giving wrong gradients.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t, const char* op);
  const Tensor& get() const;
  bool defined() const { return tensor_.defined(); }

 private:
  Tensor tensor_;
  uint64_t version_ = 0;
  const char* op_ = "";
};

using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grads,
                                                     const std::vector<bool>& needs_grad)>;

// A node whose backward is a closure written next to the op's forward.
class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn) : Node(std::move(name)), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(const std::vector<Tensor>& grads) override;
  void release_saved() override { fn_ = nullptr; }

 private:
  BackwardFn fn_;
};

// The AccumulateGrad of a leaf that requires grad, created on first use and then shared.
std::shared_ptr<Node> grad_accumulator(const Tensor& leaf);

}  // namespace kiln
