// A training checkpoint: everything a resumed run needs to continue bit for bit — model
// parameters and buffers, optimiser state, the optimiser step, the data loader's position, the
// default RNG's state, the running epoch loss — plus the resolved config, so `kiln eval` can
// rebuild the model from the file alone. Stored as one safetensors file (tensors under "model/"
// and "optim/", the rest as metadata), written atomically.
#pragma once

#include <string>

#include "kiln/core/rng.h"
#include "kiln/data/data_loader.h"
#include "kiln/io/safetensors.h"
#include "kiln/nn/module.h"
#include "kiln/optim/optimizer.h"

namespace kiln::io {

struct TrainingState {
  int64_t step = 0;  // optimiser updates done
  data::LoaderState loader;
  GeneratorState rng;
  double epoch_loss_sum = 0.0;  // sum of batch losses so far in the current epoch
  int64_t epoch_batches = 0;
  std::string config_toml;
  std::string model_name;
  Metadata extra;  // e.g. the text vocabulary
};

struct Checkpoint {
  nn::StateDict model;
  optim::OptimState optim;
  TrainingState state;
};

void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer* optimizer,
                     const TrainingState& state);
Checkpoint load_checkpoint(const std::string& path);  // IoError if the file is not a Kiln checkpoint

}  // namespace kiln::io
