#include "kiln/io/checkpoint.h"

#include <cstring>
#include <stdexcept>

namespace kiln::io {

namespace {

constexpr const char* kFormatKey = "kiln.format";
constexpr const char* kFormat = "checkpoint-v1";

// Doubles are stored by their bit pattern so a resumed run sees exactly the same value.
std::string double_bits(double v) {
  uint64_t u;
  std::memcpy(&u, &v, 8);
  return std::to_string(u);
}
double bits_double(const std::string& s) {
  uint64_t u = std::stoull(s);
  double v;
  std::memcpy(&v, &u, 8);
  return v;
}

const std::string& require(const Metadata& m, const std::string& key, const std::string& path) {
  auto it = m.find(key);
  if (it == m.end()) throw IoError(detail::concat(path, ": not a Kiln checkpoint (metadata '", key, "' missing)"));
  return it->second;
}

int64_t to_int(const std::string& s, const std::string& key, const std::string& path) {
  try {
    size_t used = 0;
    long long v = std::stoll(s, &used);
    if (used != s.size()) throw std::invalid_argument(s);
    return v;
  } catch (const std::exception&) {
    throw IoError(detail::concat(path, ": corrupt checkpoint: metadata '", key, "' is not an integer: '", s, "'"));
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer* optimizer,
                     const TrainingState& s) {
  TensorMap tensors;
  for (const auto& [name, t] : model.state_dict()) tensors["model/" + name] = t;
  if (optimizer)
    for (const auto& [name, t] : optimizer->state_dict()) tensors["optim/" + name] = t;
  Metadata meta = s.extra;
  meta[kFormatKey] = kFormat;
  meta["step"] = std::to_string(s.step);
  meta["loader.epoch"] = std::to_string(s.loader.epoch);
  meta["loader.batch"] = std::to_string(s.loader.batch);
  meta["rng.seed"] = std::to_string(s.rng.seed);
  meta["rng.offset"] = std::to_string(s.rng.offset);
  meta["epoch_loss_sum"] = double_bits(s.epoch_loss_sum);
  meta["epoch_batches"] = std::to_string(s.epoch_batches);
  meta["config"] = s.config_toml;
  meta["model.name"] = s.model_name;
  if (optimizer) meta["optim.name"] = optimizer->name();
  save_safetensors(path, tensors, meta);
}

Checkpoint load_checkpoint(const std::string& path) {
  SafetensorsContent content = load_safetensors(path);
  const Metadata& m = content.metadata;
  if (require(m, kFormatKey, path) != kFormat)
    throw IoError(detail::concat(path, ": unsupported checkpoint format '", m.at(kFormatKey), "' (expected ",
                                 kFormat, ")"));
  Checkpoint c;
  for (auto& [name, t] : content.tensors) {
    if (name.rfind("model/", 0) == 0)
      c.model[name.substr(6)] = t;
    else if (name.rfind("optim/", 0) == 0)
      c.optim[name.substr(6)] = t;
    else
      throw IoError(detail::concat(path, ": corrupt checkpoint: unexpected tensor '", name, "'"));
  }
  TrainingState& s = c.state;
  s.step = to_int(require(m, "step", path), "step", path);
  s.loader.epoch = to_int(require(m, "loader.epoch", path), "loader.epoch", path);
  s.loader.batch = to_int(require(m, "loader.batch", path), "loader.batch", path);
  s.rng.seed = static_cast<uint64_t>(to_int(require(m, "rng.seed", path), "rng.seed", path));
  s.rng.offset = static_cast<uint64_t>(to_int(require(m, "rng.offset", path), "rng.offset", path));
  s.epoch_batches = to_int(require(m, "epoch_batches", path), "epoch_batches", path);
  try {
    s.epoch_loss_sum = bits_double(require(m, "epoch_loss_sum", path));
  } catch (const std::logic_error&) {
    throw IoError(detail::concat(path, ": corrupt checkpoint: metadata 'epoch_loss_sum' is not a number"));
  }
  s.config_toml = require(m, "config", path);
  s.model_name = require(m, "model.name", path);
  for (const auto& [k, v] : m)
    if (k.rfind("extra.", 0) == 0) s.extra[k] = v;
  return c;
}

}  // namespace kiln::io
