// Random crop + flip, one image at a time through a small scratch buffer.
#include "kiln/data/augment.h"

#include <algorithm>
#include <vector>

#include "kiln/core/rng.h"

namespace kiln::data {

void augment_images(Batch& batch, uint64_t batch_seed, const AugmentOptions& options) {
  Tensor& x = batch.input;
  KILN_CHECK(x.dim() == 4, "augment_images: expected a (B, C, H, W) batch, got ", x.str());
  KILN_CHECK_TYPE(x.dtype() == DType::f32, "augment_images: expected f32 images, got ", x.str());
  KILN_CHECK(options.pad >= 0, "augment_images: pad must be >= 0, got ", options.pad);
  if (!x.is_contiguous()) x = clone_raw(x);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t pad = options.pad;
  float* data = x.data<float>();
  std::vector<float> src(static_cast<size_t>(C * H * W));
  Generator gen(batch_seed);
  for (int64_t i = 0; i < B; ++i) {
    // Two draws per image whatever the options, so image i's choices never depend on others.
    // Keyed by the image's position in the whole batch, so a data-parallel shard of the batch
    // gets the same crops and flips as the unsharded batch.
    const int64_t pos = batch.positions.empty() ? i : batch.positions[static_cast<size_t>(i)];
    gen.set_state({batch_seed, static_cast<uint64_t>(2 * pos)});
    const uint64_t r_crop = gen.next_u64();
    const uint64_t r_flip = gen.next_u64();
    const int64_t span = 2 * pad + 1;  // offsets 0 .. 2*pad into the padded image
    const int64_t dy = static_cast<int64_t>((r_crop >> 32) % static_cast<uint64_t>(span)) - pad;
    const int64_t dx = static_cast<int64_t>((r_crop & 0xffffffffu) % static_cast<uint64_t>(span)) - pad;
    const bool flip = options.flip && (r_flip >> 63) != 0;
    if (dy == 0 && dx == 0 && !flip) continue;
    float* img = data + i * C * H * W;
    std::copy(img, img + C * H * W, src.begin());
    // out[y, x] = padded[y + pad + dy, x + pad + dx] = in[y + dy, x + dx] (or pad_value outside),
    // then mirrored: out[y, W-1-x] when flipping.
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < H; ++y) {
        const int64_t sy = y + dy;
        float* row = img + (c * H + y) * W;
        for (int64_t xo = 0; xo < W; ++xo) {
          const int64_t sx = (flip ? W - 1 - xo : xo) + dx;
          row[xo] = (sy < 0 || sy >= H || sx < 0 || sx >= W) ? options.pad_value : src[(c * H + sy) * W + sx];
        }
      }
  }
  x.bump_version();
}

std::function<void(Batch&, uint64_t)> make_image_augment(AugmentOptions options) {
  return [options](Batch& batch, uint64_t seed) { augment_images(batch, seed, options); };
}

}  // namespace kiln::data
