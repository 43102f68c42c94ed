// Sequential. A Linear directly followed by a ReLU runs as one fused linear+relu (the GEMM
// applies the ReLU while each output tile is in registers); the result is identical.
#include "kiln/nn/sequential.h"

#include "kiln/nn/activation.h"
#include "kiln/nn/linear.h"

namespace kiln::nn {

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (size_t i = 0; i < modules_.size(); ++i) {
    auto* lin = dynamic_cast<Linear*>(modules_[i].get());
    if (lin && i + 1 < modules_.size() && dynamic_cast<ReLU*>(modules_[i + 1].get())) {
      h = lin->forward_act(h, ops::LinearActivation::relu);
      ++i;
      continue;
    }
    h = modules_[i]->forward(h);
  }
  return h;
}

const ModulePtr& Sequential::operator[](size_t i) const {
  KILN_CHECK_INDEX(i < modules_.size(), "Sequential: index ", i, " out of range for ", modules_.size(), " modules");
  return modules_[i];
}

}  // namespace kiln::nn
