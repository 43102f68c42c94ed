#include "kiln/dist/data_parallel.h"

#include <chrono>
#include <cstring>

#include "kiln/dist/consistency.h"
#include "kiln/dist/tree_reduce.h"

namespace kiln::dist {

namespace {
bool is_power_of_two(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }
}  // namespace

DataParallel::DataParallel(Communicator& comm, std::vector<Tensor> params, DataParallelOptions options)
    : comm_(comm) {
  const int n = comm.size();
  shards_ = options.shards > 0 ? options.shards : n;
  overlap_ = options.overlap;
  compressor_ = make_compressor(options.compression, options.topk_ratio, options.topk_warmup);
  // Collective checks: every rank reaches them together, so every rank reports the error.
  check_all(comm, shards_ % n == 0,
            detail::concat("ddp: dist.shards = ", shards_, " cannot be split over ", n,
                           " ranks\nhelp: use a world size that divides dist.shards"));
  check_all(comm, is_power_of_two(shards_) || shards_ == n,
            detail::concat("ddp: dist.shards = ", shards_, " must be a power of two, or equal to the world size (", n,
                           "), for the fixed reduction tree to split between ranks"));
  KILN_CHECK(options.bucket_bytes >= 4, "ddp: dist.bucket_mb is too small");
  for (int64_t s = comm.rank(); s < shards_; s += n) local_shards_.push_back(s);

  // Buckets in the order backward produces gradients: the model's last parameters first. With
  // ZeRO each bucket is padded to a multiple of the world size, so it splits into equal blocks.
  zero_ = options.zero;
  int64_t offset = 0;
  auto close_bucket = [&] {
    Bucket& b = buckets_.back();
    b.padded = zero_ ? (b.hi - b.lo + n - 1) / n * n : b.hi - b.lo;
    offset = b.lo + b.padded;
  };
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    KILN_CHECK_TYPE(it->dtype() == DType::f32, "ddp: parameters must be f32, got ", it->str());
    if (buckets_.empty() || (buckets_.back().hi - buckets_.back().lo) * 4 >= options.bucket_bytes) {
      if (!buckets_.empty()) close_bucket();
      buckets_.push_back({offset, offset, 0, 0, 0, nullptr});
    }
    Bucket& b = buckets_.back();
    index_[&it->impl()] = params_.size();
    params_.push_back({*it, offset, it->numel(), static_cast<int64_t>(buckets_.size()) - 1});
    offset += it->numel();
    b.hi = offset;
    ++b.params;
  }
  if (!buckets_.empty()) close_bucket();
  KILN_CHECK(all_equal(comm, offset) && all_equal(comm, static_cast<int64_t>(params_.size())),
             "ddp: the ranks' models differ (rank ", comm.rank(), " has ", params_.size(), " parameters, ", offset,
             " values)");
  for (size_t j = 0; j < local_shards_.size(); ++j) acc_.push_back(Tensor::zeros({offset}));
  taken_.assign(params_.size(), false);
  if (zero_) {
    KILN_CHECK(!compressor_, "ddp: ZeRO (dist.zero) and gradient compression cannot be combined yet");
    // This rank's block of every bucket: its values, the gradient block the reduce-scatter
    // delivers, and (in the optimiser) its state. Padding stays zero.
    Tensor flat = Tensor::zeros({offset});
    for (auto& p : params_) {
      Tensor v = contiguous_raw(p.tensor.detach());
      std::copy(v.data<float>(), v.data<float>() + p.numel, flat.data<float>() + p.offset);
    }
    for (auto& b : buckets_) {
      const int64_t block = b.padded / n;
      Tensor mine = clone_raw(flat.as_strided({block}, {1}, b.lo + comm.rank() * block));
      mine.set_requires_grad(true);
      shard_params_.push_back(mine);
      shard_grads_.push_back(Tensor::zeros({block}));
    }
  }
}

void DataParallel::after_update() {
  if (!zero_) return;
  // Every rank's updated blocks, gathered into the whole flat parameter vector, then into the
  // parameters themselves.
  Tensor flat = Tensor::empty({acc_[0].numel()});
  std::vector<WorkHandle> works;
  for (size_t i = 0; i < buckets_.size(); ++i)
    works.push_back(comm_.allgather(shard_params_[i].detach(), flat.as_strided({buckets_[i].padded}, {1}, buckets_[i].lo)));
  for (auto& w : works) w->wait();
  for (auto& p : params_) {
    std::copy(flat.data<float>() + p.offset, flat.data<float>() + p.offset + p.numel, p.tensor.data<float>());
    p.tensor.bump_version();
  }
}

DataParallel::~DataParallel() {
  // A step abandoned by an exception may leave reductions in flight on buffers we own.
  for (auto& b : buckets_)
    if (b.work) try {
        b.work->wait();
      } catch (...) {
      }
}

void DataParallel::broadcast_from_root(const std::vector<Tensor>& tensors) {
  std::vector<WorkHandle> works;
  for (const Tensor& t : tensors) {
    KILN_CHECK(t.is_contiguous(), "ddp: cannot broadcast non-contiguous ", t.str());
    works.push_back(comm_.broadcast(t, 0));
  }
  for (auto& w : works) w->wait();
}

void DataParallel::begin_backward(int64_t j, bool first_micro, bool last) {
  KILN_CHECK_INDEX(j >= 0 && j < static_cast<int64_t>(local_shards_.size()), "ddp: local shard ", j,
                   " is outside [0, ", local_shards_.size(), ")");
  current_ = j;
  first_micro_ = first_micro;
  last_backward_ = last;
  std::fill(taken_.begin(), taken_.end(), false);
  if (!last) return;
  next_launch_ = 0;
  for (auto& b : buckets_) b.pending = b.params;
  if (!overlap_) return;
  hook_ = std::make_unique<autograd::GradReadyHookGuard>([this](const Tensor& leaf) {
    auto it = index_.find(&leaf.impl());
    if (it != index_.end()) take_gradient(params_[it->second], true);
  });
}

// Moves a parameter's fresh gradient into this shard's accumulator (or zeros, if it has none).
void DataParallel::take_gradient(Param& p, bool from_hook) {
  const size_t i = static_cast<size_t>(&p - params_.data());
  if (taken_[i]) return;
  taken_[i] = true;
  float* dst = acc_[static_cast<size_t>(current_)].data<float>() + p.offset;
  Tensor g = p.tensor.grad();
  if (g.defined()) {
    g = contiguous_raw(g);
    const float* src = g.data<float>();
    if (first_micro_)
      std::memcpy(dst, src, static_cast<size_t>(p.numel) * sizeof(float));
    else
      combine(dst, src, p.numel, DType::f32, ReduceOp::sum);
    p.tensor.set_grad(Tensor());
  } else if (first_micro_) {
    std::memset(dst, 0, static_cast<size_t>(p.numel) * sizeof(float));
  }
  if (last_backward_ && --buckets_[static_cast<size_t>(p.bucket)].pending == 0 && from_hook) launch_ready_buckets();
}

// Posts the allreduce of every complete bucket, in bucket order (the order must be the same on
// every rank; backward's order is, for the same model).
void DataParallel::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    Bucket& b = buckets_[next_launch_++];
    const int64_t n = b.hi - b.lo;
    std::vector<void*> leaves;
    for (auto& a : acc_) leaves.push_back(a.data<float>() + b.lo);
    tree_reduce(leaves, n, DType::f32);  // this rank's shards: T(L), into acc_[0]
    if (compressor_)
      compressor_->post(comm_, static_cast<int64_t>(next_launch_ - 1), acc_[0].data<float>() + b.lo, n);
    else if (zero_)  // ZeRO stage 1: each rank receives only its block of the summed bucket
      b.work = comm_.reduce_scatter(acc_[0].as_strided({b.padded}, {1}, b.lo), shard_grads_[next_launch_ - 1],
                                    ReduceOp::sum);
    else
      b.work = comm_.allreduce(acc_[0].as_strided({n}, {1}, b.lo), ReduceOp::sum);
  }
}

void DataParallel::end_backward() {
  backward_returned_ = std::chrono::steady_clock::now();
  for (auto& p : params_) take_gradient(p, false);
  if (!last_backward_) return;
  hook_.reset();
  launch_ready_buckets();
  KILN_ASSERT(next_launch_ == buckets_.size(), "ddp: bucket ", next_launch_, " was never complete");
  finish_step();
}

void DataParallel::finish_step() {
  const auto t0 = backward_returned_;
  auto seconds_since_boot = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
  };
  stats_ = OverlapStats{};
  for (size_t i = 0; i < buckets_.size(); ++i) {
    Bucket& b = buckets_[i];
    if (compressor_) {
      stats_.reduce_seconds +=
          compressor_->finish(static_cast<int64_t>(i), acc_[0].data<float>() + b.lo, b.hi - b.lo);
      continue;
    }
    b.work->wait();
    stats_.reduce_seconds += b.work->busy_seconds();
    b.work.reset();
  }
  auto t1 = std::chrono::steady_clock::now();
  stats_.exposed_seconds = std::chrono::duration<double>(t1 - t0).count();
  stats_.backward_end = seconds_since_boot(t0);
  stats_.reduced = seconds_since_boot(t1);
  stats_.buckets = static_cast<int64_t>(buckets_.size());
  if (zero_) {
    for (size_t i = 0; i < buckets_.size(); ++i) shard_params_[i].set_grad(clone_raw(shard_grads_[i]));
    return;
  }
  // The summed gradient stays in acc_[0]; .grad views it (the optimiser and clipping may write
  // it in place: acc_[0] is overwritten at the next step's first micro-step anyway).
  for (auto& p : params_)
    p.tensor.set_grad(acc_[0].as_strided(p.tensor.shape(), contiguous_strides(p.tensor.shape()), p.offset));
}

void set_dropout_stream(nn::Module& model, uint64_t stream) {
  for (auto& [name, buf] : model.named_buffers()) {
    if (!name.ends_with("rng_state")) continue;
    // Philox offsets count 128-bit blocks: 2^32 of them per stream is far more than a forward uses.
    buf.data<int64_t>()[1] = static_cast<int64_t>(stream << 32);
  }
}

}  // namespace kiln::dist

