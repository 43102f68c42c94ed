#include "kiln/cli/task.h"

#include "kiln/core/grad_mode.h"
#include "kiln/data/fashion_mnist.h"
#include "kiln/data/text.h"
#include "kiln/io/atomic_file.h"
#include "kiln/ops/ops.h"

namespace kiln::cli {

Task make_task(const TrainConfig& c, const io::Metadata* saved_extra) {
  Task t;
  t.spec.name = c.model.name;
  t.spec.dropout = c.model.dropout;
  if (c.data.dataset == "fashion-mnist") {
    std::string dir = c.data.path.empty() ? std::string(data::kFashionMnistDir) : c.data.path;
    t.train = data::load_fashion_mnist(dir, "train");
    t.test = data::load_fashion_mnist(dir, "test");
    t.sample_unit = "images";
    return t;
  }
  t.is_text = true;
  t.sample_unit = "tokens";
  KILN_CHECK(!c.data.path.empty(), "config: data.path must name the text corpus for dataset 'text'");
  std::string text = io::read_file(c.data.path);
  data::CharVocab vocab = saved_extra && saved_extra->count("extra.vocab")
                              ? data::CharVocab(saved_extra->at("extra.vocab"))
                              : data::CharVocab::from_text(text);
  auto split = static_cast<size_t>(static_cast<double>(text.size()) * (1.0 - c.data.val_fraction));
  std::string_view all(text);
  t.train = std::make_shared<data::CharDataset>(all.substr(0, split), vocab, c.data.context);
  t.test = std::make_shared<data::CharDataset>(all.substr(split), vocab, c.data.context);
  t.vocab = vocab.chars();
  t.extra["extra.vocab"] = vocab.chars();
  t.spec.vocab_size = vocab.size();
  t.spec.context = c.data.context;
  return t;
}

Tensor task_loss(const Tensor& logits, const Tensor& target) {
  if (logits.dim() == 3) {
    int64_t v = logits.shape()[2];
    return ops::cross_entropy(ops::reshape(logits, {-1, v}), ops::reshape(target, {-1}));
  }
  return ops::cross_entropy(logits, target);
}

int64_t count_correct(const Tensor& logits, const Tensor& target) {
  NoGradGuard no_grad;
  Tensor pred = ops::argmax(logits, -1);
  Tensor hits = ops::eq(pred, target);
  return static_cast<int64_t>(ops::sum(ops::to(hits, DType::i64)).item());
}

}  // namespace kiln::cli
