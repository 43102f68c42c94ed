// Image augmentation as a batch transform (LoaderOptions::transform): random crop after padding
// (pad 4 on every side, crop back to H x W) and random horizontal flip. Every random choice comes
// from a Philox Generator seeded with the batch seed, so a batch is augmented the same way on
// every run and after a resume.
#pragma once

#include <cstdint>
#include <functional>

#include "kiln/data/dataset.h"

namespace kiln::data {

struct AugmentOptions {
  int64_t pad = 4;         // 0 disables the crop
  bool flip = true;        // mirror left-right with probability 1/2
  float pad_value = 0.0f;  // value of padded pixels (for normalised data: -mean/std is black)
};

// Augments batch.input, an f32 (B, C, H, W) tensor, in place; each image draws its own offsets
// and flip. Images are independent of each other's draws: image i uses counters [2i, 2i+2).
void augment_images(Batch& batch, uint64_t batch_seed, const AugmentOptions& options = {});

std::function<void(Batch&, uint64_t)> make_image_augment(AugmentOptions options = {});

}  // namespace kiln::data
