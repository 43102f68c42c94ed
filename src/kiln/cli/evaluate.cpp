#include "kiln/cli/evaluate.h"

#include "kiln/core/grad_mode.h"
#include "kiln/data/data_loader.h"

namespace kiln::cli {

EvalResult evaluate(nn::Module& model, const data::DatasetPtr& dataset, int64_t batch_size, int64_t max_batches) {
  bool was_training = model.is_training();
  model.eval();
  EvalResult r = evaluate([&](const Tensor& x) { return model.forward(x); }, dataset, batch_size, max_batches);
  model.train(was_training);
  return r;
}

EvalResult evaluate(const std::function<Tensor(const Tensor&)>& forward, const data::DatasetPtr& dataset,
                    int64_t batch_size, int64_t max_batches) {
  NoGradGuard no_grad;
  data::LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.shuffle = false;
  lo.num_workers = 1;
  data::DataLoader loader(dataset, lo);
  double loss_sum = 0.0;
  int64_t correct = 0, count = 0, batches = 0;
  while (auto batch = loader.next()) {
    Tensor logits = forward(batch->input);
    int64_t n = batch->target.numel();
    loss_sum += task_loss(logits, batch->target).item() * static_cast<double>(n);
    correct += count_correct(logits, batch->target);
    count += n;
    if (max_batches > 0 && ++batches >= max_batches) break;
  }
  EvalResult r;
  r.count = count;
  if (count > 0) {
    r.loss = loss_sum / static_cast<double>(count);
    r.accuracy = static_cast<double>(correct) / static_cast<double>(count);
  }
  return r;
}

}  // namespace kiln::cli
