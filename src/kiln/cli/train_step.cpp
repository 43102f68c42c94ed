#include "kiln/cli/train_step.h"

#include <cmath>

#include "kiln/autograd/engine.h"
#include "kiln/dist/data_parallel.h"
#include "kiln/dist/pipeline.h"
#include "kiln/dist/tensor_parallel.h"
#include "kiln/dist/tree_reduce.h"
#include "kiln/nn/sequential.h"
#include "kiln/ops/ops.h"
#include "kiln/optim/optimizer.h"

namespace kiln::cli {

double GradientStep::clip_gradients(const std::vector<Tensor>& params, double max_norm) {
  return optim::clip_grad_norm(params, max_norm);
}

namespace {

// sqrt(sum over ranks of `distributed` squares + this rank's `replicated` squares).
double global_norm(dist::Communicator& comm, const std::vector<Tensor>& distributed,
                   const std::vector<Tensor>& replicated) {
  Tensor sq = Tensor::full({1}, optim::grad_sum_squares(distributed), DType::f64);
  comm.allreduce(sq, dist::ReduceOp::sum)->wait();
  return std::sqrt(sq.item() + optim::grad_sum_squares(replicated));
}

// Data parallel over the ranks (dist/data_parallel.h); with one rank and one shard this is plain
// training, bit for bit as before distribution existed.
class DataParallelStep : public GradientStep {
 public:
  DataParallelStep(const TrainConfig& c, dist::Communicator& comm, nn::ModulePtr model, const std::string& out_dir)
      : c_(c),
        comm_(comm),
        model_(std::move(model)),
        dp_(comm, model_->parameters(),
            {c.dist.shards, static_cast<int64_t>(c.dist.bucket_mb * (1 << 20)), c.dist.overlap, c.dist.compression,
             c.dist.topk_ratio, c.dist.topk_warmup_steps, c.dist.zero}) {
    sharded_ = dp_.shard_count() > 1;
    if (c.dist.timeline) {
      // Per-step timings for bench/ddp_overlap.sh: when backward ended and when the step's
      // gradient reduction completed, on a clock the ranks of one machine share.
      timeline_.emplace(out_dir + "/ddp_timeline.rank" + std::to_string(comm.rank()) + ".csv");
      *timeline_ << "step,backward_end_s,reduced_s\n";
      timeline_->precision(17);
    }
    if (comm.size() == 1) return;
    std::vector<Tensor> synced = model_->parameters();
    for (auto& [name, b] : model_->named_buffers()) {
      synced.push_back(b);
      if (b.dtype() == DType::f32) float_buffers_.push_back(b);  // batch-norm running statistics
    }
    dp_.broadcast_from_root(synced);
    std::string mine;
    for (int64_t s : dp_.local_shards()) {
      if (!mine.empty()) mine += ' ';
      mine += std::to_string(s);
    }
    std::fprintf(stderr, "%sddp: data shards %s of %lld, %lld gradient buckets\n", dist::log_prefix().c_str(),
                 mine.c_str(), static_cast<long long>(dp_.shard_count()), static_cast<long long>(dp_.bucket_count()));
  }

  void configure_loader(data::LoaderOptions& lo) const override {
    if (!sharded_) return;
    lo.shard_count = dp_.shard_count();
    lo.shards = dp_.local_shards();
  }
  std::vector<Tensor> trained_parameters() const override {
    return dp_.zero() ? dp_.shard_parameters() : model_->parameters();
  }
  void after_update() override {
    dp_.after_update();
    // Running statistics are updated from each rank's own shards; like PyTorch DDP's
    // broadcast_buffers, rank 0's are every rank's after each step, so the replicas stay equal.
    if (!float_buffers_.empty()) dp_.broadcast_from_root(float_buffers_);
  }
  bool whole_optimizer() const override { return !dp_.zero(); }
  double clip_gradients(const std::vector<Tensor>& params, double max_norm) override {
    if (!dp_.zero()) return GradientStep::clip_gradients(params, max_norm);
    return optim::clip_grad_norm_to(params, max_norm, global_norm(comm_, params, {}));  // blocks over ranks
  }

  double run(const data::Batch& batch, int64_t whole, int64_t micro, bool step_ends, int64_t step) override {
    const int64_t local = static_cast<int64_t>(dp_.local_shards().size());
    std::vector<double> shard_loss(static_cast<size_t>(local), 0.0);
    int64_t offset = 0;
    for (int64_t j = 0; j < local; ++j) {
      const int64_t rows = sharded_ ? batch.shard_sizes[static_cast<size_t>(j)] : whole;
      dp_.begin_backward(j, micro == 0, step_ends && j + 1 == local);
      if (rows > 0) {
        if (sharded_) {
          const int64_t stream =
              (step * c_.optim.grad_accum + micro) * dp_.shard_count() + dp_.local_shards()[static_cast<size_t>(j)];
          dist::set_dropout_stream(*model_, static_cast<uint64_t>(stream));
        }
        Tensor x = sharded_ ? ops::slice(batch.input, 0, offset, offset + rows) : batch.input;
        Tensor y = sharded_ ? ops::slice(batch.target, 0, offset, offset + rows) : batch.target;
        Tensor loss = task_loss(model_->forward(x), y);
        // Each shard's mean loss weighted by its share of the batch: the weighted sum over shards
        // is the batch's mean loss, whatever the sharding.
        const double share = static_cast<double>(rows) / static_cast<double>(whole);
        shard_loss[static_cast<size_t>(j)] = loss.item() * share;
        if (sharded_) loss = ops::mul(loss, share);
        autograd::backward(c_.optim.grad_accum > 1 ? ops::div(loss, static_cast<double>(c_.optim.grad_accum)) : loss);
      }
      dp_.end_backward();
      offset += rows;
    }
    if (step_ends) {
      const auto& s = dp_.last_step();
      totals_.allreduce_seconds += s.reduce_seconds;
      totals_.allreduce_exposed_seconds += s.exposed_seconds;
      ++totals_.steps;
      if (timeline_) *timeline_ << step + 1 << ',' << s.backward_end << ',' << s.reduced << '\n';
    }
    if (!sharded_) return shard_loss[0];
    std::vector<void*> leaves;
    for (auto& v : shard_loss) leaves.push_back(&v);
    dist::tree_reduce(leaves, 1, DType::f64);
    Tensor total = Tensor::full({1}, shard_loss[0], DType::f64);
    dist::allreduce_wait(comm_, total);
    return total.item();
  }

 private:
  const TrainConfig& c_;
  dist::Communicator& comm_;
  nn::ModulePtr model_;
  dist::DataParallel dp_;
  bool sharded_ = false;
  std::optional<std::ofstream> timeline_;
  std::vector<Tensor> float_buffers_;
};

std::vector<int64_t> parse_split(const std::string& text) {
  std::vector<int64_t> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find(',', at);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(at, end - at);
    KILN_CHECK(!item.empty() && item.find_first_not_of("0123456789") == std::string::npos,
               "pipeline: dist.split must be comma-separated layer indices like \"3,6\", got '", text, "'");
    out.push_back(std::stoll(item));
    at = end + 1;
  }
  return out;
}

// Pipeline parallel: this rank is one stage (dist/pipeline.h).
class PipelineStep : public GradientStep {
 public:
  PipelineStep(const TrainConfig& c, dist::Communicator& comm, nn::ModulePtr model, const Task& task)
      : c_(c), comm_(comm), model_(std::move(model)) {
    auto seq = std::dynamic_pointer_cast<nn::Sequential>(model_);
    KILN_CHECK(seq != nullptr, "pipeline: model '", c.model.name, "' is not a Sequential, so it has no layer "
               "order to cut into stages\nhelp: use mlp or cnn, or dist.strategy=ddp");
    Tensor example = task.train->get(0).input;
    pipe_.emplace(comm, seq, example.shape(),
                  dist::PipelineOptions{c.dist.micro_batches, c.dist.schedule, parse_split(c.dist.split)});
    std::fprintf(stderr, "%spipeline: stage %d of %d holds layers [%lld, %lld) (%s, %lld micro-batches)\n",
                 dist::log_prefix().c_str(), pipe_->stage(), pipe_->stages(), static_cast<long long>(pipe_->first_layer()),
                 static_cast<long long>(pipe_->end_layer()), c.dist.schedule.c_str(),
                 static_cast<long long>(c.dist.micro_batches));
  }
  std::vector<Tensor> trained_parameters() const override { return pipe_->parameters(); }
  double run(const data::Batch& batch, int64_t, int64_t, bool step_ends, int64_t) override {
    const double accum = static_cast<double>(c_.optim.grad_accum);
    double loss = pipe_->step(batch.input, batch.target, [&](const Tensor& logits, const Tensor& target) {
      Tensor l = task_loss(logits, target);
      return accum > 1 ? ops::div(l, accum) : l;
    });
    if (step_ends) {
      totals_.bubble_sum += pipe_->last_stats().bubble();
      ++totals_.steps;
    }
    return loss * accum;
  }
  void gather_model() override { pipe_->synchronize_model(); }
  std::string split() const override {
    std::string out;
    for (size_t i = 1; i + 1 < pipe_->bounds().size(); ++i) {
      if (i > 1) out += ',';
      out += std::to_string(pipe_->bounds()[i]);
    }
    return out;
  }
  double clip_gradients(const std::vector<Tensor>& params, double max_norm) override {
    // Each stage holds its own parameters: the global norm sums every stage's squares.
    return optim::clip_grad_norm_to(params, max_norm, global_norm(comm_, params, {}));
  }
  bool whole_optimizer() const override { return false; }

 private:
  const TrainConfig& c_;
  dist::Communicator& comm_;
  nn::ModulePtr model_;
  std::optional<dist::Pipeline> pipe_;
};

// Tensor parallel: every rank holds a slice of each block of gpt_char and sees the whole batch
// (dist/tensor_parallel.h).
class TensorParallelStep : public GradientStep {
 public:
  TensorParallelStep(const TrainConfig& c, dist::Communicator& comm, nn::ModulePtr model)
      : c_(c), comm_(comm), model_(model) {
    full_ = std::dynamic_pointer_cast<nn::GptChar>(model);
    KILN_CHECK(full_ != nullptr, "tensor parallel: model '", c.model.name, "' has no transformer blocks to split",
               "\nhelp: use gpt_char, or dist.strategy=ddp");
    tp_ = std::make_shared<dist::TensorParallelGpt>(comm, *full_);
    // Split weights live in the tensor-parallel attention and MLP modules, except the output
    // projections' biases, which every rank holds whole; everything else is replicated.
    for (auto& [name, p] : tp_->named_parameters()) {
      const bool in_split_module = name.find(".attn.") != std::string::npos || name.find(".mlp.") != std::string::npos;
      (in_split_module && !name.ends_with("proj_bias") ? split_ : replicated_).push_back(p);
    }
    std::fprintf(stderr, "%stensor parallel: each block's heads and MLP width split %d ways\n",
                 dist::log_prefix().c_str(), comm.size());
  }
  std::vector<Tensor> trained_parameters() const override { return tp_->parameters(); }
  double run(const data::Batch& batch, int64_t, int64_t, bool, int64_t) override {
    Tensor loss = task_loss(tp_->forward(batch.input), batch.target);
    const double value = loss.item();
    autograd::backward(c_.optim.grad_accum > 1 ? ops::div(loss, static_cast<double>(c_.optim.grad_accum)) : loss);
    return value;
  }
  void gather_model() override { tp_->gather_into(*full_); }
  double clip_gradients(const std::vector<Tensor>& params, double max_norm) override {
    return optim::clip_grad_norm_to(params, max_norm, global_norm(comm_, split_, replicated_));
  }
  bool whole_optimizer() const override { return false; }

 private:
  const TrainConfig& c_;
  dist::Communicator& comm_;
  nn::ModulePtr model_;
  std::shared_ptr<nn::GptChar> full_;
  std::shared_ptr<dist::TensorParallelGpt> tp_;
  std::vector<Tensor> split_, replicated_;
};

}  // namespace

std::unique_ptr<GradientStep> make_gradient_step(const TrainConfig& c, dist::Communicator& comm, nn::ModulePtr model,
                                                 const Task& task, const std::string& out_dir) {
  if (c.dist.strategy == "pipeline") return std::make_unique<PipelineStep>(c, comm, std::move(model), task);
  if (c.dist.strategy == "tensor") return std::make_unique<TensorParallelStep>(c, comm, std::move(model));
  return std::make_unique<DataParallelStep>(c, comm, std::move(model), out_dir);
}

}  // namespace kiln::cli
