#include "kiln/dist/tensor_parallel.h"

#include <cstring>

#include "kiln/ops/autograd_record.h"
#include "kiln/ops/ops.h"

namespace kiln::dist {

namespace {
Tensor allreduced_copy(Communicator& comm, const Tensor& x) {
  Tensor y = clone_raw(x);
  comm.allreduce(y, ReduceOp::sum)->wait();
  return y;
}

// A trainable leaf holding a copy of `t` (split weights become this rank's own tensors).
Tensor parameter_from(const Tensor& t) {
  Tensor p = clone_raw(t);
  p.set_requires_grad(true);
  return p;
}

// Columns [lo, hi) of a (out, in) weight: a row-parallel slice.
Tensor take_columns(const Tensor& w, int64_t lo, int64_t hi) { return clone_raw(ops::slice(w, 1, lo, hi)); }

// Every rank's `part` stacked in rank order: (N, part...).
Tensor gather_parts(Communicator& comm, const Tensor& part) {
  Tensor mine = clone_raw(part.detach());
  Shape s = {comm.size()};
  s.insert(s.end(), part.shape().begin(), part.shape().end());
  Tensor all = Tensor::empty(s);
  comm.allgather(mine, all)->wait();
  return all;
}

Tensor part_of(const Tensor& all, int r) { return ops::squeeze(ops::slice(all, 0, r, r + 1), 0); }

void write_whole(const Tensor& dst, const Tensor& src) {
  KILN_ASSERT(dst.numel() == src.numel() && dst.is_contiguous(), "tensor parallel: gather into ", dst.str());
  Tensor s = contiguous_raw(src);
  std::memcpy(dst.raw_data(), s.raw_data(), static_cast<size_t>(s.numel()) * sizeof(float));
  dst.bump_version();
}
}  // namespace

Tensor copy_to_tensor_parallel(Communicator& comm, const Tensor& x) {
  if (!ops::any_requires_grad({x})) return x;
  return ops::record("tp_copy", {x}, x.detach(), [&comm](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{allreduced_copy(comm, g)};
  });
}

Tensor reduce_from_tensor_parallel(Communicator& comm, const Tensor& x) {
  Tensor y = allreduced_copy(comm, x.detach());
  if (!ops::any_requires_grad({x})) return y;
  return ops::record("tp_reduce", {x}, y,
                     [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g}; });
}

Tensor take_rows(const Tensor& w, const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  std::vector<Tensor> parts;
  for (auto [lo, hi] : ranges) parts.push_back(ops::slice(w.detach(), 0, lo, hi));
  return clone_raw(ops::cat(parts, 0));
}

TensorParallelAttention::TensorParallelAttention(Communicator& comm, nn::CausalSelfAttention& full) : comm_(comm) {
  const int n = comm.size(), r = comm.rank();
  const int64_t C = full.proj().weight().size(0), H = full.n_heads(), D = C / H;
  KILN_CHECK(H % n == 0, "tensor parallel: ", H, " attention heads cannot be split over ", n,
             " ranks\nhelp: use a world size that divides model n_heads");
  d_model_ = C;
  local_heads_ = H / n;
  const int64_t lo = r * local_heads_ * D, hi = (r + 1) * local_heads_ * D;  // this rank's heads
  qkv_w_ = register_parameter("qkv_weight", parameter_from(take_rows(full.qkv().weight(), {{lo, hi}, {C + lo, C + hi}, {2 * C + lo, 2 * C + hi}})));
  qkv_b_ = register_parameter("qkv_bias", parameter_from(take_rows(full.qkv().bias(), {{lo, hi}, {C + lo, C + hi}, {2 * C + lo, 2 * C + hi}})));
  proj_w_ = register_parameter("proj_weight", parameter_from(take_columns(full.proj().weight(), lo, hi)));
  proj_b_ = register_parameter("proj_bias", parameter_from(full.proj().bias()));
}

Tensor TensorParallelAttention::forward(const Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), Hl = local_heads_, Cl = qkv_w_.size(0) / 3, D = Cl / Hl;
  Tensor qkv = ops::linear(copy_to_tensor_parallel(comm_, x), qkv_w_, qkv_b_);  // (B, T, 3 C/N)
  auto heads = [&](int64_t i) {
    return ops::permute(ops::reshape(ops::slice(qkv, 2, i * Cl, (i + 1) * Cl), {B, T, Hl, D}), {0, 2, 1, 3});
  };
  Tensor y = ops::scaled_dot_product_attention(heads(0), heads(1), heads(2), true);  // (B, Hl, T, D)
  y = ops::reshape(ops::permute(y, {0, 2, 1, 3}), {B, T, Cl});
  // Row-parallel projection: partial sums over this rank's heads, summed over ranks, bias once.
  return reduce_from_tensor_parallel(comm_, ops::linear(y, proj_w_, Tensor())) + proj_b_;
}

TensorParallelMlp::TensorParallelMlp(Communicator& comm, nn::Mlp& full) : comm_(comm) {
  const int n = comm.size(), r = comm.rank();
  const int64_t d_mlp = full.fc().weight().size(0);
  KILN_CHECK(d_mlp % n == 0, "tensor parallel: the MLP width ", d_mlp, " cannot be split over ", n, " ranks");
  const int64_t lo = r * d_mlp / n, hi = (r + 1) * d_mlp / n;
  fc_w_ = register_parameter("fc_weight", parameter_from(take_rows(full.fc().weight(), {{lo, hi}})));
  fc_b_ = register_parameter("fc_bias", parameter_from(take_rows(full.fc().bias(), {{lo, hi}})));
  proj_w_ = register_parameter("proj_weight", parameter_from(take_columns(full.proj().weight(), lo, hi)));
  proj_b_ = register_parameter("proj_bias", parameter_from(full.proj().bias()));
}

Tensor TensorParallelMlp::forward(const Tensor& x) {
  Tensor h = ops::linear_act(copy_to_tensor_parallel(comm_, x), fc_w_, fc_b_, ops::LinearActivation::gelu_tanh);
  return reduce_from_tensor_parallel(comm_, ops::linear(h, proj_w_, Tensor())) + proj_b_;
}

TensorParallelGpt::TensorParallelGpt(Communicator& comm, nn::GptChar& full) : comm_(comm), full_(full) {
  KILN_CHECK(!full.has_dropout(), "tensor parallel: gpt_char with dropout is not supported yet\n"
             "help: set model.dropout=0");
  register_module("tok_emb", full.tok_emb());
  register_module("pos_emb", full.pos_emb());
  register_module("ln_f", full.ln_f());
  blocks_ = register_module("blocks", std::make_shared<nn::Sequential>());
  for (size_t i = 0; i < full.blocks()->size(); ++i) {
    auto* block = dynamic_cast<nn::Block*>((*full.blocks())[i].get());
    KILN_ASSERT(block != nullptr, "gpt_char block ", i, " is not a Block");
    blocks_->add(std::make_shared<TensorParallelBlock>(comm, *block));
  }
}

TensorParallelBlock::TensorParallelBlock(Communicator& comm, nn::Block& full) {
  ln1_ = register_module("ln1", full.ln1());
  attn_ = register_module("attn", std::make_shared<TensorParallelAttention>(comm, full.attn()));
  ln2_ = register_module("ln2", full.ln2());
  mlp_ = register_module("mlp", std::make_shared<TensorParallelMlp>(comm, full.mlp()));
}

Tensor TensorParallelBlock::forward(const Tensor& x) {
  Tensor h = x + attn_->forward(ln1_->forward(x));
  return h + mlp_->forward(ln2_->forward(h));
}

Tensor TensorParallelGpt::forward(const Tensor& idx) {
  const int64_t T = idx.size(1);
  KILN_CHECK(idx.dim() == 2 && T >= 1 && T <= full_.context(), "gpt_char: expected token ids (B, T <= ",
             full_.context(), "), got ", idx.str());
  Tensor h = full_.tok_emb()->forward(idx) + full_.pos_emb()->forward(Tensor::arange(T));
  h = full_.ln_f()->forward(blocks_->forward(h));
  return ops::linear(h, full_.tok_emb()->weight());  // the tied head, replicated
}

void TensorParallelGpt::gather_into(nn::GptChar& full) {
  const int n = comm_.size();
  for (size_t i = 0; i < blocks_->size(); ++i) {
    auto* block = dynamic_cast<nn::Block*>((*full.blocks())[i].get());
    auto& tp = dynamic_cast<TensorParallelBlock&>(*(*blocks_)[i]);
    auto params = [](nn::Module& m) { return m.named_parameters(); };
    auto get = [&](nn::Module& m, const std::string& key) {
      for (auto& [name, t] : params(m))
        if (name == key) return t;
      KILN_ASSERT(false, "no parameter ", key);
    };
    TensorParallelAttention& attn = tp.attn();
    TensorParallelMlp& mlp = tp.mlp();
    const int64_t C = block->attn().proj().weight().size(0), Cn = C / n;
    // qkv: rank r's rows are [q_r; k_r; v_r]; the whole weight is [q_0..q_{N-1}; k_...; v_...].
    for (const char* which : {"qkv_weight", "qkv_bias"}) {
      Tensor all = gather_parts(comm_, get(attn, which));  // (N, 3 C/N, ...)
      std::vector<Tensor> order;
      for (int c = 0; c < 3; ++c)
        for (int r = 0; r < n; ++r) order.push_back(ops::slice(part_of(all, r), 0, c * Cn, (c + 1) * Cn));
      write_whole(std::string(which) == "qkv_weight" ? block->attn().qkv().weight() : block->attn().qkv().bias(),
                ops::cat(order, 0));
    }
    auto gather_columns = [&](const Tensor& part, const Tensor& dst) {  // (out, in/N) per rank -> (out, in)
      Tensor all = gather_parts(comm_, part);
      std::vector<Tensor> cols;
      for (int r = 0; r < n; ++r) cols.push_back(part_of(all, r));
      write_whole(dst, ops::cat(cols, 1));
    };
    auto gather_rows = [&](const Tensor& part, const Tensor& dst) {
      Tensor all = gather_parts(comm_, part);
      std::vector<Tensor> rows;
      for (int r = 0; r < n; ++r) rows.push_back(part_of(all, r));
      write_whole(dst, ops::cat(rows, 0));
    };
    gather_columns(get(attn, "proj_weight"), block->attn().proj().weight());
    write_whole(block->attn().proj().bias(), get(attn, "proj_bias"));
    gather_rows(get(mlp, "fc_weight"), block->mlp().fc().weight());
    gather_rows(get(mlp, "fc_bias"), block->mlp().fc().bias());
    gather_columns(get(mlp, "proj_weight"), block->mlp().proj().weight());
    write_whole(block->mlp().proj().bias(), get(mlp, "proj_bias"));
  }
}

}  // namespace kiln::dist
