// CausalSelfAttention, Mlp and the pre-LN transformer Block.
#include "kiln/nn/transformer.h"

#include "kiln/ops/nn_ops.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::nn {

CausalSelfAttention::CausalSelfAttention(int64_t d_model, int64_t n_heads, Generator& gen, double dropout,
                                         uint64_t dropout_seed)
    : d_model_(d_model), n_heads_(n_heads) {
  KILN_CHECK(d_model > 0 && n_heads > 0 && d_model % n_heads == 0, "CausalSelfAttention: d_model ", d_model,
             " must be a positive multiple of n_heads ", n_heads);
  qkv_ = register_module("qkv", std::make_shared<Linear>(d_model, 3 * d_model, gen));
  proj_ = register_module("proj", std::make_shared<Linear>(d_model, d_model, gen));
  if (dropout > 0) drop_ = register_module("drop", std::make_shared<Dropout>(dropout, dropout_seed));
}

Tensor CausalSelfAttention::forward(const Tensor& x) {
  KILN_CHECK(x.dim() == 3 && x.size(2) == d_model_, "CausalSelfAttention: expected input (B, T, ", d_model_,
             "), got ", shape_str(x.shape()));
  int64_t B = x.size(0), T = x.size(1), C = d_model_, H = n_heads_, D = C / H;
  Tensor qkv = qkv_->forward(x);  // (B, T, 3C)
  // Each of q, k, v is a strided view (B, T, H, D) -> (B, H, T, D); no copies here.
  auto heads = [&](int64_t i) {
    return ops::permute(ops::reshape(ops::slice(qkv, 2, i * C, (i + 1) * C), {B, T, H, D}), {0, 2, 1, 3});
  };
  Tensor y = ops::scaled_dot_product_attention(heads(0), heads(1), heads(2), true);  // (B, H, T, D)
  y = ops::reshape(ops::permute(y, {0, 2, 1, 3}), {B, T, C});                         // re-assemble heads
  y = proj_->forward(y);
  return drop_ ? drop_->forward(y) : y;
}

Mlp::Mlp(int64_t d_model, int64_t d_mlp, Generator& gen, double dropout, uint64_t dropout_seed) {
  fc_ = register_module("fc", std::make_shared<Linear>(d_model, d_mlp, gen));
  proj_ = register_module("proj", std::make_shared<Linear>(d_mlp, d_model, gen));
  if (dropout > 0) drop_ = register_module("drop", std::make_shared<Dropout>(dropout, dropout_seed));
}

Tensor Mlp::forward(const Tensor& x) {
  Tensor y = proj_->forward(fc_->forward_act(x, ops::LinearActivation::gelu_tanh));
  return drop_ ? drop_->forward(y) : y;
}

Block::Block(int64_t d_model, int64_t n_heads, int64_t d_mlp, Generator& gen, double dropout, uint64_t dropout_seed) {
  // Two independent dropout streams derived from one seed.
  Generator seeds(dropout_seed);
  uint64_t attn_seed = seeds.next_u64(), mlp_seed = seeds.next_u64();
  ln1_ = register_module("ln1", std::make_shared<LayerNorm>(d_model));
  attn_ = register_module("attn", std::make_shared<CausalSelfAttention>(d_model, n_heads, gen, dropout, attn_seed));
  ln2_ = register_module("ln2", std::make_shared<LayerNorm>(d_model));
  mlp_ = register_module("mlp", std::make_shared<Mlp>(d_model, d_mlp, gen, dropout, mlp_seed));
}

Tensor Block::forward(const Tensor& x) {
  Tensor h = x + attn_->forward(ln1_->forward(x));
  return h + mlp_->forward(ln2_->forward(h));
}

}  // namespace kiln::nn
