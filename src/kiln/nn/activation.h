// Parameter-free layers: activations, Dropout and Flatten as modules, so they can sit in a
// Sequential.
#pragma once

#include "kiln/core/rng.h"
#include "kiln/nn/module.h"
#include "kiln/ops/elementwise.h"

namespace kiln::nn {

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return ops::relu(x); }
  std::string name() const override { return "ReLU"; }
};

class GELU : public Module {
 public:
  explicit GELU(ops::GeluApprox approx = ops::GeluApprox::none) : approx_(approx) {}
  Tensor forward(const Tensor& x) override { return ops::gelu(x, approx_); }
  std::string name() const override { return "GELU"; }

 private:
  ops::GeluApprox approx_;
};

class SiLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return ops::silu(x); }
  std::string name() const override { return "SiLU"; }
};

class Tanh : public Module {
 public:
  Tensor forward(const Tensor& x) override { return ops::tanh(x); }
  std::string name() const override { return "Tanh"; }
};

class Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& x) override { return ops::sigmoid(x); }
  std::string name() const override { return "Sigmoid"; }
};

// Zeroes each element with probability p in training (scaling the rest by 1/(1-p)); identity in
// eval. It owns its Generator, seeded at construction, so masks do not depend on other draws;
// its state is a buffer (rng_state), so a checkpoint resumes the same mask sequence.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, uint64_t seed = 0);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Dropout"; }
  double p() const { return p_; }

 private:
  double p_;
  Generator gen_;
  Tensor rng_state_;  // (2) i64: the generator's seed and offset, saved with the model
};

// Flattens dims start_dim..end_dim into one (default: everything but the batch dim).
class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1) : start_(start_dim), end_(end_dim) {}
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Flatten"; }

 private:
  int64_t start_, end_;
};

}  // namespace kiln::nn
