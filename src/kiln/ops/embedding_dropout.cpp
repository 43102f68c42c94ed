// embedding (a row gather, whose backward scatter-adds rows into the weight gradient) and dropout
// (a Philox mask that is a pure function of (seed, counter), so a seed gives the same mask on any
// number of threads).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/autograd_record.h"
#include "kiln/ops/nn_ops.h"
#include "kiln/ops/trace.h"

namespace kiln::ops {

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  TracedOp trace_;
  KILN_CHECK(weight.dim() == 2, "embedding: weight must be 2-d (V, D), got ", shape_str(weight.shape()));
  KILN_CHECK_TYPE(is_floating(weight.dtype()), "embedding: weight must be floating point, got ",
                  dtype_name(weight.dtype()));
  KILN_CHECK_TYPE(is_integral(indices.dtype()), "embedding: indices must be integers, got ",
                  dtype_name(indices.dtype()), "\nhelp: convert with .to(DType::i64)");
  const int64_t V = weight.shape()[0], D = weight.shape()[1];
  Tensor idx = contiguous_raw(to_dtype_raw(indices, DType::i64));
  const int64_t n = idx.numel();
  const int64_t* ip = idx.data<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    KILN_CHECK_INDEX(ip[i] >= 0 && ip[i] < V, "embedding: index ", ip[i], " at position ", i,
                     " is out of range for a table of ", V, " rows");
  Tensor wc = contiguous_raw(weight);
  Shape out_shape = indices.shape();
  out_shape.push_back(D);
  Tensor out = Tensor::empty(out_shape, weight.dtype());
  const size_t row_bytes = static_cast<size_t>(D) * element_size(weight.dtype());
  const char* src = static_cast<const char*>(wc.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  parallel_for(0, n, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, D)), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) std::memcpy(dst + i * row_bytes, src + ip[i] * row_bytes, row_bytes);
  });
  return traced(trace_, "embedding", {weight, indices},
                           record("embedding", {weight}, out,
                                  [idx, V, D, dtype = weight.dtype()](const Tensor& g, const std::vector<bool>&) {
                                    Tensor gc = contiguous_raw(g);
                                    Tensor gw = Tensor::zeros({V, D}, dtype);
                                    const int64_t n = idx.numel();
                                    const int64_t* ip = idx.data<int64_t>();
                                    dispatch_float(dtype, "embedding backward", [&]<typename T>() {
                                      const T* gp = gc.data<T>();
                                      T* o = gw.data<T>();
                                      // Threads own column ranges and walk the indices in order: repeated ids
                                      // accumulate in a fixed order, so the result does not depend on the thread count.
                                      parallel_for(0, D, std::max<int64_t>(8, 65536 / std::max<int64_t>(1, n)),
                                                   [&](int64_t c0, int64_t c1) {
                                                     for (int64_t i = 0; i < n; ++i) {
                                                       T* row = o + ip[i] * D;
                                                       const T* gr = gp + i * D;
                                                       for (int64_t c = c0; c < c1; ++c) row[c] += gr[c];
                                                     }
                                                   });
                                    });
                                    return std::vector<Tensor>{gw};
                                  }),
                           {});
}

namespace {

// y[i] = x[i] * scale where element i of the draw is kept (its 24-bit uniform >= p), else 0, and
// mask[i] = kept. Element i uses word i % 4 of Philox block (base + i / 4), exactly as
// Generator::uniform_at, so the mask depends on (seed, base) only, never on threading.
template <typename T>
void dropout_forward(const T* x, T* y, uint8_t* mask, int64_t n, uint64_t seed, uint64_t base, uint32_t threshold,
                     T scale) {
  const std::array<uint32_t, 2> key{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  parallel_for(0, (n + 3) / 4, 4096, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      const uint64_t ctr = base + static_cast<uint64_t>(b);
      const auto r = philox4x32({static_cast<uint32_t>(ctr), static_cast<uint32_t>(ctr >> 32), 0u, 0u}, key);
      for (int64_t k = 0; k < 4 && b * 4 + k < n; ++k) {
        const int64_t i = b * 4 + k;
        const bool keep = (r[k] >> 8) >= threshold;
        mask[i] = keep;
        y[i] = x[i] * (keep ? scale : T(0));  // x * mask * scale, as PyTorch (NaN stays NaN)
      }
    }
  });
}

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  TracedOp trace_;
  KILN_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability must be in [0, 1], got ", p);
  if (!training || p == 0.0)
    return traced(trace_, "dropout", {x}, x, {{"training", int64_t{training && p > 0 ? 1 : 0}}});
  KILN_CHECK_TYPE(x.dtype() == DType::f32 || x.dtype() == DType::f64, "dropout: expected f32 or f64, got ",
                  dtype_name(x.dtype()));
  Tensor xc = contiguous_raw(x);
  const int64_t n = xc.numel();
  const uint64_t seed = gen.seed();
  const uint64_t base = gen.reserve(static_cast<uint64_t>((n + 3) / 4));
  // keep iff u >= p with u = (word >> 8) / 2^24, i.e. (word >> 8) >= ceil(p * 2^24).
  const uint32_t threshold = static_cast<uint32_t>(std::ceil(p * 16777216.0));
  const double scale = p >= 1.0 ? 0.0 : 1.0 / (1.0 - p);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  // The mask is kept (one byte per element) rather than regenerated: Philox costs more than the
  // memory traffic of reading it back.
  Tensor mask = Tensor::empty({n}, DType::u8);
  dispatch_float(x.dtype(), "dropout", [&]<typename T>() {
    dropout_forward<T>(xc.data<T>(), out.data<T>(), mask.data<uint8_t>(), n, seed, base, threshold,
                       static_cast<T>(scale));
  });
  return traced(trace_, "dropout", {x},
                           record("dropout", {x}, out,
                                  [n, mask, scale](const Tensor& g, const std::vector<bool>&) {
                                    Tensor gc = contiguous_raw(g);
                                    Tensor gx = Tensor::empty(g.shape(), g.dtype());
                                    dispatch_float(g.dtype(), "dropout backward", [&]<typename T>() {
                                      const T* gp = gc.data<T>();
                                      const uint8_t* m = mask.data<uint8_t>();
                                      T* o = gx.data<T>();
                                      const T s = static_cast<T>(scale);
                                      parallel_for(0, n, 1 << 15, [&](int64_t lo, int64_t hi) {
                                        for (int64_t i = lo; i < hi; ++i) o[i] = gp[i] * (m[i] ? s : T(0));
                                      });
                                    });
                                    return std::vector<Tensor>{gx};
                                  }),
                           {{"training", int64_t{training && p > 0 ? 1 : 0}}});
}

}  // namespace kiln::ops
