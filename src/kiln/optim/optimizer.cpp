// Optimizer::zero_grad and global gradient-norm clipping.
#include "kiln/optim/optimizer.h"

#include <cmath>

#include "kiln/core/grad_mode.h"
#include "kiln/core/thread_pool.h"
#include "kiln/optim/update_helpers.h"

namespace kiln::optim {

namespace {

// Sum of squares in double over fixed chunks combined in chunk order: the same bits whatever
// the thread count.
constexpr int64_t kNormChunk = 1 << 16;

template <typename T>
double sum_squares(const T* g, int64_t n) {
  int64_t chunks = num_chunks(n, kNormChunk);
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  parallel_for(0, chunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      double s = 0;
      for (int64_t i = c * kNormChunk, e = std::min(n, i + kNormChunk); i < e; ++i) {
        double v = static_cast<double>(g[i]);
        s += v * v;
      }
      partial[static_cast<size_t>(c)] = s;
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace

void Optimizer::zero_grad() {
  for (auto& p : params_) p.set_grad(Tensor());
}

double grad_sum_squares(const std::vector<Tensor>& params) {
  double sq = 0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    Tensor c = contiguous_raw(g);
    sq += dispatch_float(c.dtype(), "clip_grad_norm", [&]<typename T>() { return sum_squares(c.data<T>(), c.numel()); });
  }
  return sq;
}

double clip_grad_norm_to(const std::vector<Tensor>& params, double max_norm, double norm) {
  KILN_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be positive, got ", max_norm);
  // PyTorch's rule: scale by max_norm / (norm + 1e-6) when that is below 1.
  double coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0) return norm;
  NoGradGuard no_grad;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    Tensor c = contiguous_raw(g);
    dispatch_float(c.dtype(), "clip_grad_norm", [&]<typename T>() {
      T* d = c.data<T>();
      T s = static_cast<T>(coef);
      detail::update_chunks(c.numel(), [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) d[i] *= s;
      });
    });
    if (!c.same(g)) copy_into(g, c);
    g.bump_version();
  }
  return norm;
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  KILN_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be positive, got ", max_norm);
  return clip_grad_norm_to(params, max_norm, std::sqrt(grad_sum_squares(params)));
}

}  // namespace kiln::optim
