// Finite-difference gradient checking in f64: compares the autograd gradient of
// sum(f(inputs) * w) (w a fixed random weighting, so every output element matters) with
// central differences, element by element.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::autograd {

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0.0;
  std::string message;  // the first mismatch: input, element, analytic vs numeric
};

// Inputs must be f64; those with requires_grad set are checked.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, double eps = 1e-6, double atol = 1e-5,
                          double rtol = 1e-4);

}  // namespace kiln::autograd
