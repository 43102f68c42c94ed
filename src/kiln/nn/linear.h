// Layers with a weight matrix: Linear and Embedding. PyTorch's default initialisation, drawn from
// the Generator passed at construction (weight first, then bias).
#pragma once

#include "kiln/core/rng.h"
#include "kiln/nn/module.h"
#include "kiln/ops/linalg.h"

namespace kiln::nn {

// y = x W^T + b. Init: W, b ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt(5)).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, Generator& gen, bool bias = true);
  Tensor forward(const Tensor& x) override;  // (..., in) -> (..., out)
  // act(forward(x)) with the activation fused into the GEMM epilogue (ops::linear_act).
  Tensor forward_act(const Tensor& x, ops::LinearActivation act);
  std::string name() const override { return "Linear"; }
  const Tensor& weight() const { return weight_; }  // (out, in)
  const Tensor& bias() const { return bias_; }      // (out), undefined without bias
  int64_t in_features() const { return weight_.size(1); }
  int64_t out_features() const { return weight_.size(0); }

 private:
  Tensor weight_, bias_;
};

// A lookup table of row vectors. Init: N(0, 1).
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, Generator& gen);
  Tensor forward(const Tensor& indices) override;  // integer (...) -> (..., dim)
  std::string name() const override { return "Embedding"; }
  const Tensor& weight() const { return weight_; }  // (num_embeddings, dim)

 private:
  Tensor weight_;
};

}  // namespace kiln::nn
