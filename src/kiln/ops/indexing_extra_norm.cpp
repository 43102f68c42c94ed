// lrn, mean_variance_norm and det (indexing_extra.h): the small numeric ops that ONNX graphs of
// older vision models and of linear-algebra tests carry. Forward only; f16/bf16 compute in f32.
// Statistics and determinants accumulate in f64.
#include <algorithm>
#include <cmath>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/indexing_extra.h"

namespace kiln::ops {

namespace {

constexpr int64_t kGrain = 1 << 14;

bool is_half(DType t) { return t == DType::f16 || t == DType::bf16; }

void check_float(const Tensor& x, const char* op) {
  KILN_CHECK(x.defined(), op, ": input is undefined");
  KILN_CHECK_TYPE(is_floating(x.dtype()), op, ": input must be a float tensor (f32, f64, f16, bf16), got ",
                  dtype_name(x.dtype()));
}

}  // namespace

// ---------------------------------------------------------------- lrn

Tensor lrn(const Tensor& x, int64_t size, double alpha, double beta, double bias) {
  check_float(x, "lrn");
  KILN_CHECK(x.dim() >= 2, "lrn: input must be (N, C, d...), got ", shape_str(x.shape()));
  KILN_CHECK(size >= 1, "lrn: size must be >= 1, got ", size);
  if (is_half(x.dtype())) return to_dtype_raw(lrn(to_dtype_raw(x, DType::f32), size, alpha, beta, bias), x.dtype());
  Tensor xc = contiguous_raw(x);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  if (out.numel() == 0) return out;
  const int64_t N = x.shape()[0], C = x.shape()[1], S = x.numel() / (N * C);
  const int64_t lo_off = (size - 1) / 2, hi_off = size - 1 - lo_off;  // floor and ceil of (size-1)/2
  const double scale = alpha / static_cast<double>(size);
  dispatch_float(x.dtype(), "lrn", [&]<typename T>() {
    const T* px = xc.data<T>();
    T* po = out.data<T>();
    parallel_for(0, N * C, std::max<int64_t>(1, kGrain / (S * size)), [&](int64_t lo, int64_t hi) {
      for (int64_t nc = lo; nc < hi; ++nc) {
        const int64_t n = nc / C, c = nc % C;
        const int64_t c0 = std::max<int64_t>(0, c - lo_off), c1 = std::min(C - 1, c + hi_off);
        const T* xs = px + nc * S;
        T* ys = po + nc * S;
        for (int64_t s = 0; s < S; ++s) {
          double sq = 0.0;
          for (int64_t j = c0; j <= c1; ++j) {
            double v = static_cast<double>(px[(n * C + j) * S + s]);
            sq += v * v;
          }
          ys[s] = static_cast<T>(static_cast<double>(xs[s]) / std::pow(bias + scale * sq, beta));
        }
      }
    });
  });
  return out;
}

// ---------------------------------------------------------------- mean_variance_norm

Tensor mean_variance_norm(const Tensor& x, const std::vector<int64_t>& axes) {
  check_float(x, "mean_variance_norm");
  const int64_t rank = x.dim();
  std::vector<bool> reduced(static_cast<size_t>(rank), false);
  for (int64_t a : axes) {
    int64_t d = wrap_dim(a, rank, "mean_variance_norm");
    KILN_CHECK(!reduced[d], "mean_variance_norm: axis ", a, " is repeated in axes ", shape_str(axes));
    reduced[d] = true;
  }
  // View x as (G, R): kept dims first, reduced dims last; compute in f64, then copy back through
  // the same permuted view of the output (copy_into converts to x's dtype).
  Shape ps;
  Strides xst;
  Tensor xd = contiguous_raw(to_dtype_raw(x, DType::f64));
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  if (out.numel() == 0) return out;
  Strides ost;
  int64_t R = 1;
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t d = 0; d < rank; ++d)
      if (reduced[d] == (pass == 1)) {
        ps.push_back(x.shape()[d]);
        xst.push_back(xd.strides()[d]);
        ost.push_back(out.strides()[d]);
        if (pass == 1) R *= x.shape()[d];
      }
  Tensor rows = clone_raw(xd.as_strided(ps, xst, xd.offset()));  // (G, R)
  const int64_t G = x.numel() / R;
  double* p = rows.data<double>();
  parallel_for(0, G, std::max<int64_t>(1, kGrain / R), [&](int64_t lo, int64_t hi) {
    for (int64_t g = lo; g < hi; ++g) {
      double* row = p + g * R;
      double mean = 0.0, var = 0.0;
      for (int64_t i = 0; i < R; ++i) mean += row[i];
      mean /= static_cast<double>(R);
      for (int64_t i = 0; i < R; ++i) var += (row[i] - mean) * (row[i] - mean);
      var /= static_cast<double>(R);
      // ONNX's function body: (X - E[X]) / (sqrt(E[X^2] - E[X]^2) + 1e-9); the two-pass variance
      // is the same quantity without the cancellation.
      const double inv = 1.0 / (std::sqrt(var) + 1e-9);
      for (int64_t i = 0; i < R; ++i) row[i] = (row[i] - mean) * inv;
    }
  });
  copy_into(out.as_strided(ps, ost, 0), rows.as_strided(ps, contiguous_strides(ps), 0));
  return out;
}

// ---------------------------------------------------------------- det

Tensor det(const Tensor& x) {
  check_float(x, "det");
  KILN_CHECK(x.dim() >= 2 && x.shape()[x.dim() - 1] == x.shape()[x.dim() - 2],
             "det: input must be (..., M, M) square matrices, got ", shape_str(x.shape()));
  const int64_t M = x.shape().back();
  Shape batch_shape(x.shape().begin(), x.shape().end() - 2);
  const int64_t B = numel(batch_shape);
  Tensor a = clone_raw(to_dtype_raw(x, DType::f64));  // factorised in place
  Tensor d = Tensor::empty(batch_shape, DType::f64);
  double* pa = a.data<double>();
  double* pd = d.data<double>();
  parallel_for(0, B, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, M * M * M)), [&](int64_t lo, int64_t hi) {
    for (int64_t bi = lo; bi < hi; ++bi) {
      double* m = pa + bi * M * M;
      double det_v = 1.0;
      // Gaussian elimination with partial pivoting: det = sign(permutation) * prod(pivots).
      for (int64_t k = 0; k < M && det_v != 0.0; ++k) {
        int64_t piv = k;
        for (int64_t i = k + 1; i < M; ++i)
          if (std::abs(m[i * M + k]) > std::abs(m[piv * M + k])) piv = i;
        if (m[piv * M + k] == 0.0) {
          det_v = 0.0;
          break;
        }
        if (piv != k) {
          std::swap_ranges(m + k * M, m + (k + 1) * M, m + piv * M);
          det_v = -det_v;
        }
        const double pivot = m[k * M + k];
        det_v *= pivot;
        for (int64_t i = k + 1; i < M; ++i) {
          const double f = m[i * M + k] / pivot;
          if (f == 0.0) continue;
          for (int64_t j = k + 1; j < M; ++j) m[i * M + j] -= f * m[k * M + j];
        }
      }
      pd[bi] = det_v;
    }
  });
  return to_dtype_raw(d, x.dtype());
}

}  // namespace kiln::ops
