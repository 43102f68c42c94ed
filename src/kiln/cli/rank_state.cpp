#include "kiln/cli/rank_state.h"

#include <filesystem>

#include "kiln/io/safetensors.h"

namespace kiln::cli {

std::string rank_optimizer_path(const std::string& out_dir, int64_t step, int rank) {
  return detail::concat(out_dir, "/optim.step", step, ".rank", rank, ".safetensors");
}

void save_rank_optimizer(const std::string& out_dir, int64_t step, int rank, const optim::Optimizer& optimizer) {
  io::TensorMap tensors;
  for (auto& [name, t] : optimizer.state_dict()) tensors[name] = t;
  io::save_safetensors(rank_optimizer_path(out_dir, step, rank), tensors, {{"optimizer", optimizer.name()}});
}

optim::OptimState load_rank_optimizer(const std::string& out_dir, int64_t step, int rank) {
  const std::string path = rank_optimizer_path(out_dir, step, rank);
  KILN_CHECK_AS(IoError, std::filesystem::exists(path), "--resume: ", path, " is missing: the checkpoint at step ",
                step, " needs each rank's optimiser state");
  io::SafetensorsContent content = io::load_safetensors(path);
  return optim::OptimState(content.tensors.begin(), content.tensors.end());
}

void remove_old_rank_optimizers(const std::string& out_dir, int64_t keep, int rank, int64_t also_keep) {
  const std::string suffix = detail::concat(".rank", rank, ".safetensors");
  const std::string a = rank_optimizer_path(out_dir, keep, rank), b = rank_optimizer_path(out_dir, also_keep, rank);
  for (const auto& e : std::filesystem::directory_iterator(out_dir)) {
    const std::string name = e.path().filename().string(), path = e.path().string();
    if (name.starts_with("optim.step") && name.ends_with(suffix) && path != a && path != b)
      std::filesystem::remove(e.path());
  }
}

}  // namespace kiln::cli
