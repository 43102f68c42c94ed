// Transformer pieces for decoder-only models: causal multi-head self-attention and a pre-LN
// block, x + attn(ln1(x)) then x + mlp(ln2(x)). Dimension letters: B batch, T time, C = d_model,
// H heads, D = C / H.
#pragma once

#include <memory>

#include "kiln/core/rng.h"
#include "kiln/nn/activation.h"
#include "kiln/nn/linear.h"
#include "kiln/nn/norm.h"

namespace kiln::nn {

// qkv = Linear(C, 3C) split into heads; softmax(q k^T / sqrt(D) + causal mask) v; Linear(C, C).
class CausalSelfAttention : public Module {
 public:
  // dropout > 0 adds a Dropout after the output projection, seeded with dropout_seed.
  CausalSelfAttention(int64_t d_model, int64_t n_heads, Generator& gen, double dropout = 0.0,
                      uint64_t dropout_seed = 0);
  Tensor forward(const Tensor& x) override;  // (B, T, C) -> (B, T, C)
  std::string name() const override { return "CausalSelfAttention"; }
  Linear& qkv() { return *qkv_; }
  Linear& proj() { return *proj_; }
  int64_t n_heads() const { return n_heads_; }

 private:
  int64_t d_model_, n_heads_;
  std::shared_ptr<Linear> qkv_, proj_;
  std::shared_ptr<Dropout> drop_;
};

// Linear(C, d_mlp) -> GELU (tanh approximation, as GPT-2) -> Linear(d_mlp, C).
class Mlp : public Module {
 public:
  Mlp(int64_t d_model, int64_t d_mlp, Generator& gen, double dropout = 0.0, uint64_t dropout_seed = 0);
  Tensor forward(const Tensor& x) override;  // (..., C) -> (..., C)
  std::string name() const override { return "Mlp"; }
  Linear& fc() { return *fc_; }
  Linear& proj() { return *proj_; }

 private:
  std::shared_ptr<Linear> fc_, proj_;
  std::shared_ptr<Dropout> drop_;
};

class Block : public Module {
 public:
  Block(int64_t d_model, int64_t n_heads, int64_t d_mlp, Generator& gen, double dropout = 0.0,
        uint64_t dropout_seed = 0);
  Tensor forward(const Tensor& x) override;  // (B, T, C) -> (B, T, C)
  std::string name() const override { return "Block"; }
  CausalSelfAttention& attn() { return *attn_; }
  Mlp& mlp() { return *mlp_; }
  const std::shared_ptr<LayerNorm>& ln1() const { return ln1_; }
  const std::shared_ptr<LayerNorm>& ln2() const { return ln2_; }

 private:
  std::shared_ptr<LayerNorm> ln1_, ln2_;
  std::shared_ptr<CausalSelfAttention> attn_;
  std::shared_ptr<Mlp> mlp_;
};

}  // namespace kiln::nn
