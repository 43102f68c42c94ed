// Which algorithm computes an f32 convolution, per shape and per pass, and the f32 entry points
// that run a chosen one:
//   im2col     unfold + GEMM; any shape (strides, dilation, groups)
//   direct     vectorised loops over output rows; stride 1, no dilation, no groups; wins when
//              C*KH*KW is small (a first layer on raw pixels), where im2col mostly moves memory
//   winograd2  Winograd F(2x2, 3x3); 3x3 stride 1, any padding, no groups
//   winograd4  Winograd F(4x4, 3x3); same domain, 4x fewer multiplies, larger tiles
// The choice (ConvAlgo::automatic) is, in order: KILN_CONV_ALGO=im2col|direct|winograd|winograd2|
// winograd4 when it applies to the shape; the tuning cache entry "conv:<pass>:<shape>"
// (tune_cache.h); when tuning is on, a measurement of every applicable algorithm on first use,
// recorded in the cache; else a heuristic. Every algorithm sums in a fixed order, so results are
// deterministic for a given choice and thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "kiln/ops/cpu/conv_kernels.h"

namespace kiln::ops::cpu {

enum class ConvAlgo : uint8_t { automatic, im2col, direct, winograd2, winograd4 };
enum class ConvPass : uint8_t { forward, backward_data, backward_weights };

std::span<const ConvAlgo> all_conv_algos();  // the concrete ones (not automatic)
std::string_view conv_algo_name(ConvAlgo a);
std::string_view conv_pass_name(ConvPass p);
// "winograd" reads as winograd4.
std::optional<ConvAlgo> parse_conv_algo(std::string_view name);
bool conv_algo_applicable(ConvAlgo a, const ConvShape& s);

// The algorithm KILN_CONV_ALGO forces, if any (it still applies only where applicable).
std::optional<ConvAlgo> conv_algo_forced();
// The default without measurements.
ConvAlgo conv_algo_heuristic(const ConvShape& s, ConvPass pass);
// "conv:fwd:n128c32h13w13o64k3x3s1x1p0x0d1x1g1b1": the tuning cache key.
std::string conv_tune_key(const ConvShape& s, ConvPass pass);
// Resolves `a` (returned as is unless automatic). `measure`, when given, times one run of an
// algorithm in ms; it is called only when tuning is on and the cache has no entry.
ConvAlgo conv_algo_resolve(ConvAlgo a, const ConvShape& s, ConvPass pass,
                           const std::function<double(ConvAlgo)>& measure = {});

// The f32 entry points. Buffers are dense NCHW / OIHW; outputs are overwritten. `isa` picks a
// kernel build ("portable", "avx2", "avx512"; empty: the default for this CPU), for tests.
// automatic resolves with a measurement when tuning is on. relu: y = max(conv + b, 0), fused into
// the algorithm's last pass over the output (a backward must then mask gy by y > 0 first).
void conv_forward_f32(ConvAlgo a, const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                      std::string_view isa = {}, bool relu = false);
void conv_backward_data_f32(ConvAlgo a, const ConvShape& s, const float* gy, const float* w, float* gx,
                            std::string_view isa = {});
// gb may be null.
void conv_backward_weights_f32(ConvAlgo a, const ConvShape& s, const float* x, const float* gy, float* gw, float* gb,
                               std::string_view isa = {});

// Whether `a` can max-pool 2x2 / stride 2 in its last pass over the output (direct, Winograd).
bool conv_algo_pools(ConvAlgo a);
// yp (N, O, OH/2, OW/2) = that pool (floor) of act(conv(x, w) + b), bitwise the pool of
// conv_forward_f32's y; the full-size output never exists. conv_algo_pools(a) must hold.
void conv_forward_pool2_f32(ConvAlgo a, const ConvShape& s, const float* x, const float* w, const float* b,
                            float* yp, std::string_view isa = {}, bool relu = false);

// What the forward can keep for the weight gradient of the same algorithm (0: nothing).
int64_t conv_saved_elems(ConvAlgo fwd, ConvAlgo bwd_weights, const ConvShape& s);
// The same passes with that saved buffer: forward fills `keep` (when not null); backward
// computes whichever of gx, gw, gb is not null, sharing work between the passes where the
// algorithms allow.
void conv_forward_keep_f32(ConvAlgo a, const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                           float* keep, bool relu = false);
void conv_backward_f32(ConvAlgo data_algo, ConvAlgo weights_algo, const ConvShape& s, const float* x, const float* w,
                       const float* gy, float* gx, float* gw, float* gb, const float* saved);

}  // namespace kiln::ops::cpu
