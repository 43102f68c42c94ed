// Module: the unit of a model. It owns named parameters (trainable tensors), buffers (state that
// is saved but not trained, like batch-norm running statistics) and child modules; names are
// dotted paths ("layers.0.attn.qkv.weight"), the keys of state dicts and checkpoints.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::nn {

using StateDict = std::map<std::string, Tensor>;

class Module {
 public:
  virtual ~Module() = default;

  // Single-input forward; modules with more inputs add their own overloads.
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }

  // Recursive, in registration order (deterministic): own entries first, then each child's.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }

  // Parameters and buffers by dotted name: detached handles sharing the module's memory (clone
  // them to keep a snapshot while training goes on).
  StateDict state_dict() const;
  // Copies values into the existing tensors (no autograd). Strict: every key must match in name,
  // shape and dtype; the error names the first missing, unexpected or mismatched key.
  void load_state_dict(const StateDict& state, bool strict = true);

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();  // sets every parameter's .grad to undefined
  int64_t num_parameters() const;
  virtual std::string name() const { return "Module"; }

 protected:
  Tensor register_parameter(const std::string& name, Tensor t);  // sets requires_grad
  Tensor register_buffer(const std::string& name, Tensor t);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    check_new_name(name);
    children_.emplace_back(name, m);
    return m;
  }

 private:
  void check_new_name(const std::string& name) const;  // unique among this module's entries, no '.'

  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

using ModulePtr = std::shared_ptr<Module>;

}  // namespace kiln::nn
