// Sequential: applies its children in order; they are named "0", "1", ... (PyTorch's keys).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kiln/nn/module.h"

namespace kiln::nn {

class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<ModulePtr> modules) {
    for (auto& m : modules) add(m);
  }
  template <typename M>
  std::shared_ptr<M> add(std::shared_ptr<M> m) {
    KILN_CHECK(m != nullptr, "Sequential::add: null module");
    register_module(std::to_string(modules_.size()), m);
    modules_.push_back(m);
    return m;
  }
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Sequential"; }
  size_t size() const { return modules_.size(); }
  const ModulePtr& operator[](size_t i) const;

 private:
  std::vector<ModulePtr> modules_;
};

}  // namespace kiln::nn
