// Tensor parallelism (dist.strategy = "tensor", Shoeybi et al. 2019, "Megatron-LM"): each
// transformer block's matrices are split across the ranks, which all see the same tokens.
//
//   MLP:       fc is column-parallel (rank r holds d_mlp / N of its output features), GELU is
//              applied locally, proj is row-parallel (rank r holds the matching input features);
//              the ranks' partial outputs are summed by one allreduce.
//   attention: qkv is column-parallel by heads (rank r holds H / N heads of q, k and v), the
//              heads attend locally, proj is row-parallel; again one allreduce.
//
// Two autograd-aware communication ops make the backward right: f (copy_to_tensor_parallel) is
// the identity forward and an allreduce of the gradient backward, at the input of each split
// region; g (reduce_from_tensor_parallel) is an allreduce forward and the identity backward, at
// its output. Everything outside the split regions (embeddings, layer norms, biases added after
// g) is replicated, and its gradients come out the same on every rank.
#pragma once

#include <memory>

#include "kiln/dist/communicator.h"
#include "kiln/nn/gpt.h"
#include "kiln/nn/linear.h"
#include "kiln/nn/transformer.h"

namespace kiln::dist {

Tensor copy_to_tensor_parallel(Communicator& comm, const Tensor& x);      // f
Tensor reduce_from_tensor_parallel(Communicator& comm, const Tensor& x);  // g

// Rows [lo, hi) of a (out, in) weight for each range, concatenated: a column-parallel slice.
Tensor take_rows(const Tensor& w, const std::vector<std::pair<int64_t, int64_t>>& ranges);

class TensorParallelAttention : public nn::Module {
 public:
  TensorParallelAttention(Communicator& comm, nn::CausalSelfAttention& full);
  Tensor forward(const Tensor& x) override;  // (B, T, C) -> (B, T, C), the same on every rank
  std::string name() const override { return "TensorParallelAttention"; }

 private:
  Communicator& comm_;
  int64_t d_model_, local_heads_;
  Tensor qkv_w_, qkv_b_;    // (3 C / N, C), (3 C / N): this rank's heads of q, k and v
  Tensor proj_w_, proj_b_;  // (C, C / N) and the whole (C) bias, added after the allreduce
};

class TensorParallelMlp : public nn::Module {
 public:
  TensorParallelMlp(Communicator& comm, nn::Mlp& full);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "TensorParallelMlp"; }

 private:
  Communicator& comm_;
  Tensor fc_w_, fc_b_;      // (d_mlp / N, C), (d_mlp / N)
  Tensor proj_w_, proj_b_;  // (C, d_mlp / N), (C)
};

// A pre-LN block with its attention and MLP split; the layer norms are the whole model's own.
class TensorParallelBlock : public nn::Module {
 public:
  TensorParallelBlock(Communicator& comm, nn::Block& full);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "TensorParallelBlock"; }
  TensorParallelAttention& attn() { return *attn_; }
  TensorParallelMlp& mlp() { return *mlp_; }

 private:
  std::shared_ptr<nn::LayerNorm> ln1_, ln2_;
  std::shared_ptr<TensorParallelAttention> attn_;
  std::shared_ptr<TensorParallelMlp> mlp_;
};

// gpt_char with every block split over the ranks of `comm` (n_heads and d_mlp must divide by
// the world size). Shares the embeddings and layer norms with `full` and copies the split
// weights out of it, so it starts as the same function. Dropout must be off.
class TensorParallelGpt : public nn::Module {
 public:
  TensorParallelGpt(Communicator& comm, nn::GptChar& full);
  Tensor forward(const Tensor& idx) override;
  std::string name() const override { return "TensorParallelGpt"; }
  // Writes the split weights back into the whole model on every rank (allgather), for
  // evaluation and checkpoints.
  void gather_into(nn::GptChar& full);
  TensorParallelBlock& block(size_t i) { return dynamic_cast<TensorParallelBlock&>(*(*blocks_)[i]); }

 private:
  Communicator& comm_;
  nn::GptChar& full_;
  std::shared_ptr<nn::Sequential> blocks_;  // of TensorParallelBlock
};

}  // namespace kiln::dist
