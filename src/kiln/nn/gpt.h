// gpt_char: a small decoder-only transformer language model over characters (GPT-2 layout with
// pre-LN blocks), whose output head is tied to the token embedding.
#pragma once

#include <memory>

#include "kiln/nn/activation.h"
#include "kiln/nn/linear.h"
#include "kiln/nn/models.h"
#include "kiln/nn/norm.h"
#include "kiln/nn/sequential.h"

namespace kiln::nn {

// tok_emb (V, C) + pos_emb (context, C) -> n_layers Blocks -> ln_f -> logits = h tok_emb^T.
// The head reuses the tok_emb.weight tensor itself, so it is one parameter (listed once).
// Init as GPT-2: weights and embeddings N(0, 0.02), residual output projections
// N(0, 0.02 / sqrt(2 n_layers)), biases 0, LayerNorm 1 and 0.
class GptChar : public Module {
 public:
  GptChar(const ModelSpec& spec, uint64_t seed);
  Tensor forward(const Tensor& idx) override;  // (B, T) integer ids, T <= context -> (B, T, V) logits
  std::string name() const override { return "GptChar"; }
  int64_t context() const { return context_; }
  int64_t vocab_size() const { return tok_emb_->weight().size(0); }
  // The parts, for strategies that rebuild the model around them (dist/tensor_parallel.h).
  const std::shared_ptr<Embedding>& tok_emb() const { return tok_emb_; }
  const std::shared_ptr<Embedding>& pos_emb() const { return pos_emb_; }
  const std::shared_ptr<Sequential>& blocks() const { return blocks_; }
  const std::shared_ptr<LayerNorm>& ln_f() const { return ln_f_; }
  bool has_dropout() const { return drop_ != nullptr; }

 private:
  int64_t context_;
  std::shared_ptr<Embedding> tok_emb_, pos_emb_;
  std::shared_ptr<Dropout> drop_;
  std::shared_ptr<Sequential> blocks_;
  std::shared_ptr<LayerNorm> ln_f_;
};

}  // namespace kiln::nn
