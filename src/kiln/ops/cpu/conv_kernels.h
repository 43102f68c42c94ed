// The building blocks of conv2d below the algorithm choice (conv_algo.h):
//  - ConvShape, one convolution problem;
//  - im2col / col2im, which unfold images into a column matrix (and fold column gradients back)
//    so that a convolution is one GEMM, and the im2col+GEMM driver in f32 and f64;
//  - the direct kernels for few input channels (a first layer on raw pixels), one build per
//    instruction set (conv_isa.cpp), and their driver.
// All of them thread over images or (channel, image) planes, write each output element from one
// thread only and add partial sums in a fixed order, so results are deterministic.
#pragma once

#include <cstdint>
#include <string_view>

namespace kiln::ops::cpu {

// x (N, C, H, W), w (O, C/groups, KH, KW), b (O), y (N, O, OH, OW).
struct ConvShape {
  int64_t N = 1, C = 1, H = 1, W = 1, O = 1, KH = 1, KW = 1;
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
  bool bias = false;
  int64_t OH() const { return (H + 2 * ph - dh * (KH - 1) - 1) / sh + 1; }
  int64_t OW() const { return (W + 2 * pw - dw * (KW - 1) - 1) / sw + 1; }
  int64_t Cg() const { return C / groups; }
  int64_t Og() const { return O / groups; }
  bool unit_3x3() const {  // 3x3, stride 1, no dilation, no groups: Winograd's domain
    return KH == 3 && KW == 3 && sh == 1 && sw == 1 && dh == 1 && dw == 1 && groups == 1;
  }
};

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
// exercise the recompute path. (Winograd's transformed input obeys the same limit.)
int64_t& conv_keep_columns_limit();

// ---------------------------------------------------------------- im2col + GEMM

// Elements of the column buffer im2col_conv_forward can keep for the backward pass.
int64_t im2col_saved_elems(const ConvShape& s);
// y = conv(x, w) + b (b may be null), then max(y, 0) when relu. col_keep, when not null, receives
// all columns (im2col_saved_elems) so that the weight gradient need not recompute them.
template <typename T>
void im2col_conv_forward(const ConvShape& s, const T* x, const T* w, const T* b, T* y, T* col_keep,
                         bool relu = false);
// Any of gx, gw, gb may be null (not wanted). saved_col is col_keep of the forward, or null.
template <typename T>
void im2col_conv_backward(const ConvShape& s, const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb,
                          const T* saved_col);

// ---------------------------------------------------------------- direct kernels (conv_isa.cpp)

// One image, stride 1, no dilation, no groups, padding already applied: xp (C, Hp, Wp),
// w (O, C, KH, KW), output (O, Hp-KH+1, Wp-KW+1). Vectorised along output rows, several output
// channels at a time; good when C*KH*KW is small and im2col would mostly move memory.
struct DirectKernels {
  std::string_view isa;
  // y = act(bias + conv(xp, w)); bias may be null; relu: clamp at 0.
  void (*forward)(const float* xp, int64_t C, int64_t Hp, int64_t Wp, const float* w, int64_t O, int64_t KH,
                  int64_t KW, const float* bias, bool relu, float* y);
  // The same followed by a 2x2 stride-2 max pool (floor): y (O, OH/2, OW/2), bitwise the pool of
  // forward's output. xe / xo: the even and odd columns of the padded planes, (C, Hp, (Wp+1)/2)
  // each (xo's last column unused when Wp is odd).
  void (*forward_pool2)(const float* xe, const float* xo, int64_t C, int64_t Hp, int64_t Wp, const float* w,
                        int64_t O, int64_t KH, int64_t KW, const float* bias, bool relu, float* y);
  // gw (O, C, KH, KW) += sum over output positions of gy (O, OH, OW) times the input under each
  // tap; gb (O) += sum of gy when not null. Fixed summation order.
  void (*weight_grad)(const float* xp, int64_t C, int64_t Hp, int64_t Wp, const float* gy, int64_t O, int64_t KH,
                      int64_t KW, float* gw, float* gb);
};

// The build for `isa` ("portable", "avx2", "avx512"; empty: the one float_kernels() uses), or null
// when this CPU cannot run it.
const DirectKernels* direct_kernels(std::string_view isa = {});

// The direct algorithm over a batch: stride 1, no dilation, no groups, any padding.
void direct_conv_forward(const ConvShape& s, const float* x, const float* w, const float* b, bool relu, float* y,
                         const DirectKernels& k);
// The same followed by a 2x2 stride-2 max pool (floor): yp (N, O, OH/2, OW/2).
void direct_conv_forward_pool2(const ConvShape& s, const float* x, const float* w, const float* b, bool relu,
                               float* yp, const DirectKernels& k);
void direct_conv_backward_data(const ConvShape& s, const float* gy, const float* w, float* gx, const DirectKernels& k);
void direct_conv_backward_weights(const ConvShape& s, const float* x, const float* gy, float* gw, float* gb,
                                  const DirectKernels& k);

// gb[o] = sum of gy (N, O, P) over n and p, in a fixed order (f64 accumulation).
void conv_bias_grad(const float* gy, int64_t N, int64_t O, int64_t P, float* gb);

}  // namespace kiln::ops::cpu
