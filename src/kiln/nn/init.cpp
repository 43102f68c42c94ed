// Weight initialisers: draw a fresh random tensor, then copy it into the target without autograd.
#include "kiln/nn/init.h"

#include <cmath>

#include "kiln/core/grad_mode.h"

namespace kiln::nn::init {

namespace {

// Random tensors are generated in f32/f64 and converted on copy, so f16/bf16 weights work too.
DType draw_dtype(const Tensor& t) { return t.dtype() == DType::f64 ? DType::f64 : DType::f32; }

void assign(Tensor& t, const Tensor& values, const char* op) {
  KILN_CHECK_TYPE(is_floating(t.dtype()), op, ": expected a floating-point tensor, got ", dtype_name(t.dtype()));
  NoGradGuard no_grad;
  copy_into(t, values);
  t.bump_version();
}

double fan_for(const Tensor& t, FanMode mode) {
  auto [in, out] = fans(t);
  int64_t f = mode == FanMode::fan_in ? in : out;
  KILN_CHECK(f > 0, "init: fan is zero for a tensor of shape ", shape_str(t.shape()));
  return static_cast<double>(f);
}

}  // namespace

double calculate_gain(Nonlinearity nl, double param) {
  switch (nl) {
    case Nonlinearity::linear:
    case Nonlinearity::sigmoid: return 1.0;
    case Nonlinearity::tanh: return 5.0 / 3.0;
    case Nonlinearity::relu: return std::sqrt(2.0);
    case Nonlinearity::leaky_relu: return std::sqrt(2.0 / (1.0 + param * param));
  }
  return 1.0;
}

std::pair<int64_t, int64_t> fans(const Tensor& t) {
  KILN_CHECK(t.dim() >= 2, "init: fan in and fan out need a tensor of at least 2 dims, got ",
             shape_str(t.shape()));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

void uniform_(Tensor& t, Generator& gen, double lo, double hi) {
  KILN_CHECK(lo <= hi, "uniform_: lo ", lo, " is above hi ", hi);
  assign(t, uniform(t.shape(), lo, hi, gen, draw_dtype(t)), "uniform_");
}

void normal_(Tensor& t, Generator& gen, double mean, double std) {
  KILN_CHECK(std >= 0, "normal_: std must be non-negative, got ", std);
  assign(t, normal(t.shape(), mean, std, gen, draw_dtype(t)), "normal_");
}

void constant_(Tensor& t, double value) {
  NoGradGuard no_grad;
  fill_raw(t, value);
  t.bump_version();
}
void zeros_(Tensor& t) { constant_(t, 0.0); }
void ones_(Tensor& t) { constant_(t, 1.0); }

void kaiming_uniform_(Tensor& t, Generator& gen, double a, FanMode mode, Nonlinearity nl) {
  double std = calculate_gain(nl, a) / std::sqrt(fan_for(t, mode));
  double bound = std::sqrt(3.0) * std;
  uniform_(t, gen, -bound, bound);
}

void kaiming_normal_(Tensor& t, Generator& gen, double a, FanMode mode, Nonlinearity nl) {
  normal_(t, gen, 0.0, calculate_gain(nl, a) / std::sqrt(fan_for(t, mode)));
}

void xavier_uniform_(Tensor& t, Generator& gen, double gain) {
  auto [in, out] = fans(t);
  double bound = gain * std::sqrt(6.0 / static_cast<double>(in + out));
  uniform_(t, gen, -bound, bound);
}

void xavier_normal_(Tensor& t, Generator& gen, double gain) {
  auto [in, out] = fans(t);
  normal_(t, gen, 0.0, gain * std::sqrt(2.0 / static_cast<double>(in + out)));
}

}  // namespace kiln::nn::init
