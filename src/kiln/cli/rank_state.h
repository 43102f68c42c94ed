// Optimiser state that lives on the ranks, not on rank 0: a pipeline stage's, a tensor-parallel
// rank's slices', ZeRO's blocks. Each rank saves its own beside the checkpoint, as
// optim.step<S>.rank<R>.safetensors, before rank 0 writes the checkpoint that names step S, and
// removes older ones only after that checkpoint exists: a crash at any point leaves a checkpoint
// whose per-rank files are all there (the checkpointing of Megatron and DeepSpeed, in small).
#pragma once

#include <string>

#include "kiln/optim/optimizer.h"

namespace kiln::cli {

// Checkpoint metadata keys (TrainingState::extra: "extra." keys are kept) of a run whose
// optimiser state is per rank: the world size that wrote it, and a pipeline's stage starts.
inline constexpr const char* kPerRankOptimizer = "extra.dist_optimizer_per_rank_world_size";
inline constexpr const char* kPipelineSplit = "extra.dist_pipeline_split";  // "3,6"

std::string rank_optimizer_path(const std::string& out_dir, int64_t step, int rank);
void save_rank_optimizer(const std::string& out_dir, int64_t step, int rank, const optim::Optimizer& optimizer);
optim::OptimState load_rank_optimizer(const std::string& out_dir, int64_t step, int rank);
// Removes this rank's files of steps other than `keep` (and other than `also_keep`, if given).
void remove_old_rank_optimizers(const std::string& out_dir, int64_t keep, int rank, int64_t also_keep = -1);

}  // namespace kiln::cli
