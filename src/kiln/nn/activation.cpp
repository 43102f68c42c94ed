// Dropout and Flatten (the activations are inline in the header).
#include "kiln/nn/activation.h"

#include "kiln/ops/nn_ops.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::nn {

Dropout::Dropout(double p, uint64_t seed) : p_(p), gen_(seed) {
  KILN_CHECK(p >= 0.0 && p < 1.0, "Dropout: p must be in [0, 1), got ", p);
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || p_ == 0.0) return x;
  return ops::dropout(x, p_, true, gen_);
}

Tensor Flatten::forward(const Tensor& x) { return ops::flatten(x, start_, end_); }

}  // namespace kiln::nn
