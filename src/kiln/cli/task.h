// What a config trains on: the datasets, the model spec that fits them, and how a batch's
// logits and targets become a loss and an accuracy. Image classification (Fashion-MNIST) and
// next-character prediction (a text corpus) are the two tasks.
#pragma once

#include "kiln/cli/config.h"
#include "kiln/data/dataset.h"
#include "kiln/io/safetensors.h"
#include "kiln/nn/models.h"

namespace kiln::cli {

struct Task {
  bool is_text = false;
  data::DatasetPtr train;
  data::DatasetPtr test;
  nn::ModelSpec spec;
  io::Metadata extra;       // saved in checkpoints: the text vocabulary
  std::string vocab;        // text: id -> character
  std::string sample_unit;  // "images" or "tokens"
};

// Builds the task of a config. `saved_extra` (from a checkpoint) pins the vocabulary, so a
// checkpoint is evaluated with the ids it was trained with.
Task make_task(const TrainConfig& config, const io::Metadata* saved_extra = nullptr);

// logits (B, classes) or (B, T, vocab); target (B) or (B, T) -> mean cross-entropy.
Tensor task_loss(const Tensor& logits, const Tensor& target);
// Number of correct argmax predictions in the batch.
int64_t count_correct(const Tensor& logits, const Tensor& target);

}  // namespace kiln::cli
