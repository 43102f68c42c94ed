// Winograd convolution F(m x m, 3 x 3), m = 2 or 4, for 3x3 stride-1 convolutions with any
// padding, f32. A convolution of an alpha x alpha input tile (alpha = m + 2) with a 3x3 kernel is
//   Y = A^T [ (G w G^T) (.) (B^T X B) ] A          ((.) elementwise, over the alpha^2 positions)
// so the whole layer becomes alpha^2 independent GEMMs over channels, with m^2*9/alpha^2 times
// fewer multiplies (2.25x for F(2,3), 4x for F(4,3)) plus cheap tile transforms. The backward
// passes are the adjoints of the same pipeline:
//   dM = A dY A^T                       the output-gradient transform (per tile)
//   dV = U^T dM,   dX = B dV B^T        input gradient (tiles overlap: their parts add up)
//   dU = sum over tiles dM V^T,  dW = G^T dU G   weight gradient (one GEMM with K = all tiles)
//
// Layout: images go to the vector lanes. A block of kWinoLanes images is transposed to
// (C, H, W, lanes), so every transform is plain vector arithmetic with no gathers and no bounds
// tests (the transposed block carries the zero padding). Tiles are numbered
// t = ((lane_block*TH + ty)*TW + tx)*kWinoLanes + lane, and the GEMM operands are
//   U (alpha^2, O, C), V (alpha^2, C, T), M (alpha^2, O, T).
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "kiln/ops/cpu/conv_kernels.h"
#include "kiln/ops/cpu/gemm.h"

namespace kiln::ops::cpu {

constexpr int kWinoLanes = 8;  // images per lane block

// The per-ISA loops (winograd_isa.cpp). Xl is a lane block (C, Hl, Wl, kWinoLanes) with
// Hl = TH*m + 2, Wl = TW*m + 2; tile (ty, tx) of it starts at row ty*m, column tx*m.
struct WinogradKernels {
  std::string_view isa;
  // dst (C, Hl, Wl, lanes): dst(c, i, j, l) = image l (c, i - ph, j - pw), zero outside the image
  // and for lanes l >= nl. Image l starts at src + l*img_stride.
  void (*to_lanes)(const float* src, int64_t img_stride, int nl, int64_t C, int64_t H, int64_t W, int64_t ph,
                   int64_t pw, int64_t Hl, int64_t Wl, float* dst);
  // The crop back: image l (c, i, j) = src(c, i + oh, j + ow, l) for i < H, j < W, l < nl. Reads
  // up to 7 columns past the last one it returns (callers leave slack after src).
  void (*from_lanes)(const float* src, int64_t C, int64_t Hl, int64_t Wl, int64_t oh, int64_t ow, int64_t H,
                     int64_t W, int nl, float* dst, int64_t img_stride);
  // V = B^T X B per tile: v[pos*ld_pos + c*ld_c + (ty*TW + tx)*lanes + l].
  void (*input)(int m, const float* xl, int64_t C, int64_t TH, int64_t TW, float* v, int64_t ld_pos, int64_t ld_c);
  // Y = A^T M A (+ bias[o], then ReLU when asked) into yl (O, TH*m, TW*m, lanes).
  void (*output)(int m, const float* mm, int64_t ld_pos, int64_t ld_o, int64_t O, int64_t TH, int64_t TW,
                 const float* bias, bool relu, float* yl);
  // The same followed by a 2x2 stride-2 max pool: yl (O, TH*m/2, TW*m/2, lanes).
  void (*output_pool2)(int m, const float* mm, int64_t ld_pos, int64_t ld_o, int64_t O, int64_t TH, int64_t TW,
                       const float* bias, bool relu, float* yl);
  // dM = A dY A^T from gyl (O, TH*m, TW*m, lanes).
  void (*grad_output)(int m, const float* gyl, int64_t O, int64_t TH, int64_t TW, float* dm, int64_t ld_pos,
                      int64_t ld_o);
  // dX = B dV B^T per tile, overlapping tiles added in tile order, into gxl (C, Hl, Wl, lanes)
  // (overwritten).
  void (*grad_input)(int m, const float* dv, int64_t ld_pos, int64_t ld_c, int64_t C, int64_t TH, int64_t TW,
                     float* gxl);
  // Channel lanes, for batches too small to fill image lanes (8 channels per vector; C and O
  // multiples of 8). V = B^T X B for tiles [t0, t1) of one padded channels-last image xt
  // (Hl, Wl, C): v[pos*ld_pos + t*C + c], t = ty*TW + tx.
  void (*input_cl)(int m, const float* xt, int64_t Wl, int64_t C, int64_t TW, int64_t t0, int64_t t1, float* v,
                   int64_t ld_pos);
  // act(A^T M A + bias) from mm[pos*ld_pos + t*O + o], 2x2 max-pooled when pool, into one image's
  // planes y (O, YH, YW), cropped.
  void (*output_cl)(int m, bool pool, const float* mm, int64_t ld_pos, int64_t O, int64_t TW, int64_t t0, int64_t t1,
                    const float* bias, bool relu, float* y, int64_t YH, int64_t YW);
};

// The build for `isa` (empty: the one float_kernels() uses), or null when this CPU cannot run it.
const WinogradKernels* winograd_kernels(std::string_view isa = {});

// The forward's transformed weights U = G w G^T for every (o, c), computed once for a constant
// weight (compiled graphs): u (m+2)^2 x O x C, and each position's U^T, row-major and packed for
// the GEMM of the channel-lane layout, which then transposes and packs nothing per call.
struct WinogradWeights {
  int m = 4;
  int64_t O = 0, C = 0;
  std::vector<float> u;          // (A2, O, C)
  std::vector<float> ut;         // (A2, C, O): each position's U^T, row-major
  std::vector<PackedB> packed;  // per position: ut[pos] packed (its source, kept alive here)
};
std::shared_ptr<const WinogradWeights> winograd_weights(int m, const ConvShape& s, const float* w);

// Elements of the transformed input V the forward can keep for the weight gradient.
int64_t winograd_saved_elems(int m, const ConvShape& s);

// s.unit_3x3() must hold. y = act(conv(x, w) + b); b may be null. v_keep: null, or
// winograd_saved_elems floats that receive V. Batches smaller than kWinoLanes / 2 with C and O
// multiples of 8 put channels in the lanes instead (not when V is kept). u, when not null, is
// winograd_weights(m, s, w), computed once by the caller (compiled graphs, whose weights are
// constants); its m, O and C must be those of the call.
void winograd_forward(int m, const ConvShape& s, const float* x, const float* w, const float* b, bool relu, float* y,
                      float* v_keep, const WinogradKernels& k, const WinogradWeights* u = nullptr);
// The same followed by a 2x2 stride-2 max pool (floor): yp (N, O, OH/2, OW/2), bitwise the pool of
// winograd_forward's y. The full-size output never exists (pooled in the output transform).
void winograd_forward_pool2(int m, const ConvShape& s, const float* x, const float* w, const float* b, bool relu,
                            float* yp, const WinogradKernels& k, const WinogradWeights* u = nullptr);
// Whether the forward of s runs with channel lanes (see winograd_forward).
bool winograd_channel_lanes(const ConvShape& s);
// gx and gw may be null (not wanted). v_saved: the forward's v_keep, or null to recompute V.
// The bias gradient is not computed here (conv_bias_grad).
void winograd_backward(int m, const ConvShape& s, const float* x, const float* w, const float* gy, float* gx,
                       float* gw, const float* v_saved, const WinogradKernels& k);

}  // namespace kiln::ops::cpu
