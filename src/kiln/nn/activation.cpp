// Dropout and Flatten (the activations are inline in the header).
#include "kiln/nn/activation.h"

#include "kiln/ops/nn_ops.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::nn {

Dropout::Dropout(double p, uint64_t seed) : p_(p), gen_(seed) {
  KILN_CHECK(p >= 0.0 && p < 1.0, "Dropout: p must be in [0, 1), got ", p);
  // The generator's (seed, offset) lives in a buffer so state dicts, and so checkpoints, carry
  // it: a resumed run draws the same masks as an uninterrupted one.
  rng_state_ = register_buffer("rng_state", Tensor::from_vector<int64_t>({static_cast<int64_t>(seed), 0}));
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || p_ == 0.0) return x;
  int64_t* st = rng_state_.data<int64_t>();
  gen_.set_state({static_cast<uint64_t>(st[0]), static_cast<uint64_t>(st[1])});
  Tensor y = ops::dropout(x, p_, true, gen_);
  st[0] = static_cast<int64_t>(gen_.state().seed);
  st[1] = static_cast<int64_t>(gen_.state().offset);
  return y;
}

Tensor Flatten::forward(const Tensor& x) { return ops::flatten(x, start_, end_); }

}  // namespace kiln::nn
