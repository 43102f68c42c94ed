#include "kiln/autograd/gradcheck.h"

#include <cmath>

#include "kiln/autograd/engine.h"
#include "kiln/core/grad_mode.h"
#include "kiln/core/rng.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/reduce.h"

namespace kiln::autograd {

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, double eps, double atol, double rtol) {
  for (const auto& t : inputs)
    KILN_CHECK_TYPE(!t.requires_grad() || t.dtype() == DType::f64, "gradcheck: inputs must be f64, got ",
                    dtype_name(t.dtype()));
  Generator gen(1234);
  Tensor out0 = f(inputs);
  Tensor weight = uniform(out0.shape(), 0.5, 1.5, gen, DType::f64);
  auto objective = [&](const std::vector<Tensor>& xs) {
    Tensor y = f(xs);
    return ops::sum(ops::mul(ops::to(y, DType::f64), weight));  // ops::to keeps y's history
  };

  std::vector<Tensor> leaves;
  for (const auto& t : inputs) {
    Tensor leaf = t.defined() ? clone_raw(t) : Tensor();  // undefined = an absent optional input
    if (t.requires_grad()) leaf.set_requires_grad(true);
    leaves.push_back(leaf);
  }
  backward(objective(leaves));

  GradcheckResult result;
  NoGradGuard no_grad;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].requires_grad()) continue;
    Tensor analytic = leaves[i].grad();
    if (!analytic.defined()) analytic = Tensor::zeros(inputs[i].shape(), DType::f64);
    analytic = contiguous_raw(analytic);
    std::vector<Tensor> probe;
    for (const auto& t : inputs) probe.push_back(t.defined() ? clone_raw(t) : Tensor());
    double* p = probe[i].data<double>();
    for (int64_t k = 0; k < probe[i].numel(); ++k) {
      double orig = p[k];
      p[k] = orig + eps;
      double up = objective(probe).item();
      p[k] = orig - eps;
      double down = objective(probe).item();
      p[k] = orig;
      double numeric = (up - down) / (2 * eps);
      double a = analytic.data<double>()[k];
      double err = std::abs(a - numeric);
      result.max_abs_error = std::max(result.max_abs_error, err);
      if (result.ok && err > atol + rtol * std::abs(numeric)) {
        result.ok = false;
        result.message = detail::concat("input ", i, " element ", k, ": analytic ", a, " vs numeric ", numeric);
      }
    }
  }
  return result;
}

}  // namespace kiln::autograd
