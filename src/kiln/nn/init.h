// Weight initialisers, as in torch.nn.init: each fills an existing tensor in place from a
// Generator (no autograd history, version bumped), so a seeded model is reproducible.
#pragma once

#include <utility>

#include "kiln/core/rng.h"
#include "kiln/core/tensor.h"

namespace kiln::nn::init {

enum class FanMode { fan_in, fan_out };
enum class Nonlinearity { linear, sigmoid, tanh, relu, leaky_relu };

// The recommended gain for a nonlinearity (PyTorch's calculate_gain); `param` is leaky_relu's slope.
double calculate_gain(Nonlinearity nl, double param = 0.01);
// (fan_in, fan_out) of a weight of at least 2 dims: dim 1 and dim 0 times the receptive field.
std::pair<int64_t, int64_t> fans(const Tensor& t);

void uniform_(Tensor& t, Generator& gen, double lo = 0.0, double hi = 1.0);
void normal_(Tensor& t, Generator& gen, double mean = 0.0, double std = 1.0);
void constant_(Tensor& t, double value);
void zeros_(Tensor& t);
void ones_(Tensor& t);

// He init: std = gain / sqrt(fan) with gain from (nonlinearity, a). PyTorch's defaults.
// Uniform draws from U(-b, b) with b = sqrt(3) * std.
void kaiming_uniform_(Tensor& t, Generator& gen, double a = 0.0, FanMode mode = FanMode::fan_in,
                      Nonlinearity nl = Nonlinearity::leaky_relu);
void kaiming_normal_(Tensor& t, Generator& gen, double a = 0.0, FanMode mode = FanMode::fan_in,
                     Nonlinearity nl = Nonlinearity::leaky_relu);
// Glorot init: std = gain * sqrt(2 / (fan_in + fan_out)).
void xavier_uniform_(Tensor& t, Generator& gen, double gain = 1.0);
void xavier_normal_(Tensor& t, Generator& gen, double gain = 1.0);

}  // namespace kiln::nn::init
