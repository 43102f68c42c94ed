// gpt_char.
#include "kiln/nn/gpt.h"

#include <cmath>

#include "kiln/nn/init.h"
#include "kiln/nn/transformer.h"
#include "kiln/ops/linalg.h"

namespace kiln::nn {

GptChar::GptChar(const ModelSpec& spec, uint64_t seed) : context_(spec.context) {
  KILN_CHECK(spec.vocab_size > 0, "gpt_char: vocab_size must be set (got ", spec.vocab_size, ")");
  KILN_CHECK(spec.context > 0 && spec.d_model > 0 && spec.n_layers > 0 && spec.n_heads > 0 && spec.d_mlp > 0,
             "gpt_char: context, d_model, n_layers, n_heads and d_mlp must be positive");
  KILN_CHECK(spec.dropout >= 0 && spec.dropout < 1, "gpt_char: dropout must be in [0, 1), got ", spec.dropout);
  Generator gen(seed);
  // Dropout masks come from their own streams, so turning dropout on leaves the weights unchanged.
  Generator dropout_seeds(seed ^ 0x9E3779B97F4A7C15ull);
  const int64_t C = spec.d_model;
  tok_emb_ = register_module("tok_emb", std::make_shared<Embedding>(spec.vocab_size, C, gen));
  pos_emb_ = register_module("pos_emb", std::make_shared<Embedding>(spec.context, C, gen));
  if (spec.dropout > 0) drop_ = register_module("drop", std::make_shared<Dropout>(spec.dropout, dropout_seeds.next_u64()));
  blocks_ = register_module("blocks", std::make_shared<Sequential>());
  for (int64_t i = 0; i < spec.n_layers; ++i)
    blocks_->add(std::make_shared<Block>(C, spec.n_heads, spec.d_mlp, gen, spec.dropout, dropout_seeds.next_u64()));
  ln_f_ = register_module("ln_f", std::make_shared<LayerNorm>(C));

  // GPT-2 initialisation over the default one, in parameter order (deterministic).
  const double std = 0.02, resid_std = 0.02 / std::sqrt(2.0 * static_cast<double>(spec.n_layers));
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  for (auto& [name, p] : named_parameters()) {
    if (name.find("ln") != std::string::npos) continue;  // LayerNorms keep 1 and 0
    if (ends_with(name, ".bias")) {
      init::zeros_(p);
    } else if (ends_with(name, "attn.proj.weight") || ends_with(name, "mlp.proj.weight")) {
      init::normal_(p, gen, 0.0, resid_std);
    } else {
      init::normal_(p, gen, 0.0, std);
    }
  }
}

Tensor GptChar::forward(const Tensor& idx) {
  KILN_CHECK(idx.dim() == 2 && is_integral(idx.dtype()), "gpt_char: expected integer token ids (B, T), got ",
             idx.str());
  const int64_t T = idx.size(1);
  KILN_CHECK(T >= 1 && T <= context_, "gpt_char: sequence length ", T, " is outside [1, ", context_, "]",
             "\nhelp: crop the input to the last ", context_, " tokens");
  Tensor h = tok_emb_->forward(idx) + pos_emb_->forward(Tensor::arange(T));  // (B, T, C) + (T, C)
  if (drop_) h = drop_->forward(h);
  h = ln_f_->forward(blocks_->forward(h));
  return ops::linear(h, tok_emb_->weight());  // (B, T, V): the tied head
}

}  // namespace kiln::nn
