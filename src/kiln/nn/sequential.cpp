// Sequential.
#include "kiln/nn/sequential.h"

namespace kiln::nn {

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& m : modules_) h = m->forward(h);
  return h;
}

const ModulePtr& Sequential::operator[](size_t i) const {
  KILN_CHECK_INDEX(i < modules_.size(), "Sequential: index ", i, " out of range for ", modules_.size(), " modules");
  return modules_[i];
}

}  // namespace kiln::nn
