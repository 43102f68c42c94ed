// The data-movement half of convolution: im2col unfolds a chunk of images into a column matrix
// so that the convolution becomes one GEMM, and col2im folds column gradients back into images.
// Both thread over (channel, image) planes and touch each output element from one thread only,
// in a fixed order, so results are deterministic.
#pragma once

#include <cstdint>

namespace kiln::ops::cpu {

struct ConvGeom {
  int64_t C, H, W;     // input channels and size
  int64_t KH, KW;      // kernel
  int64_t OH, OW;      // output size
  int64_t sh, sw;      // stride
  int64_t ph, pw;      // padding
  int64_t dh, dw;      // dilation
  int64_t Cg;          // channels per group
  int64_t group_rows;  // column rows per group: Cg*KH*KW, plus one row of ones when bias is fused
};

// Images x (nb, C, H, W) contiguous -> col with leading dimension ld >= nb*OH*OW:
//   col[row(c, kh, kw)][j*OH*OW + oh*OW + ow] = x[j, c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw]
// (0 where that falls in the padding), row(c, kh, kw) = (c / Cg)*group_rows + ((c % Cg)*KH + kh)*KW + kw.
// When group_rows > Cg*KH*KW the last row of every group is filled with ones (the fused bias).
template <typename T>
void im2col(const T* x, T* col, const ConvGeom& g, int64_t nb, int64_t ld);

// The adjoint: dx (nb, C, H, W) = sum of the column entries that im2col would have read from each
// input element (dx is overwritten, not accumulated). Ones rows are ignored.
template <typename T>
void col2im(const T* col, T* dx, const ConvGeom& g, int64_t nb, int64_t ld);

// conv2d keeps its forward columns for the weight gradient when they hold at most this many
// elements (default 2^24, 64 MB of f32) and recomputes them otherwise. Tests lower it to 0 to
// exercise the recompute path.
int64_t& conv_keep_columns_limit();

}  // namespace kiln::ops::cpu
