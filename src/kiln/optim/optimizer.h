// Optimisers update parameters in place from their .grad (under NoGradGuard). Their state
// (momentum, Adam moments, step counts) is a flat name -> tensor map so a checkpoint can save and
// restore it exactly: keys are "<slot>.<param index>" ("exp_avg.3") plus "step".
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::optim {

using OptimState = std::map<std::string, Tensor>;

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params, double lr) : params_(std::move(params)), lr_(lr) {}
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  void zero_grad();  // undefines every .grad
  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  const std::vector<Tensor>& params() const { return params_; }
  virtual OptimState state_dict() const = 0;
  virtual void load_state_dict(const OptimState& state) = 0;  // errors name the bad key
  virtual std::string name() const = 0;

 protected:
  std::vector<Tensor> params_;
  double lr_;
};

struct SgdOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // Adam: L2 added to the gradient; AdamW: decoupled decay
};

std::unique_ptr<Optimizer> make_sgd(std::vector<Tensor> params, const SgdOptions& opt);
std::unique_ptr<Optimizer> make_adam(std::vector<Tensor> params, const AdamOptions& opt);
std::unique_ptr<Optimizer> make_adamw(std::vector<Tensor> params, const AdamOptions& opt);

// Scales all gradients so their global L2 norm is at most max_norm; returns the norm before.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);
// The two halves, for gradients spread over several processes (the norm is then summed across
// them): the sum of squares of the params' gradients, and scaling them for a known global norm.
double grad_sum_squares(const std::vector<Tensor>& params);
double clip_grad_norm_to(const std::vector<Tensor>& params, double max_norm, double norm);

}  // namespace kiln::optim
