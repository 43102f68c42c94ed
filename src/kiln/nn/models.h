// The reference models, built from the public nn API and selected by name in a config. Their
// architectures are what Kiln's performance is compared on: keep them exactly as written.
#pragma once

#include <string>
#include <vector>

#include "kiln/nn/module.h"

namespace kiln::nn {

struct ModelSpec {
  std::string name;          // "mlp" | "cnn" | "resnet_small" | "gpt_char"
  int64_t num_classes = 10;  // image models
  int64_t in_channels = 1;
  int64_t image_size = 28;
  // gpt_char
  int64_t vocab_size = 0;
  int64_t context = 128;
  int64_t d_model = 128;
  int64_t n_layers = 4;
  int64_t n_heads = 4;
  int64_t d_mlp = 512;
  double dropout = 0.0;
};

// Builds the model with freshly initialised weights drawn from `seed`. Unknown names throw
// ValueError listing the known ones.
ModulePtr make_model(const ModelSpec& spec, uint64_t seed);
std::vector<std::string> model_names();

}  // namespace kiln::nn
