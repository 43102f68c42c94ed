// pad (constant mode, torch.nn.functional.pad's pad order; negative pads crop) and topk
// (sorted, with i64 indices; ties keep the lower index first, NaN counts as the largest value).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/autograd_record.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::ops {

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value) {
  KILN_CHECK(x.defined(), "pad: input is undefined");
  KILN_CHECK(pads.size() % 2 == 0 && static_cast<int64_t>(pads.size()) <= 2 * x.dim(), "pad: pads must hold a (lo, hi)"
             " pair per padded dim, at most ", 2 * x.dim(), " values for ", shape_str(x.shape()), ", got ", pads.size());
  Shape out_shape = x.shape(), region = x.shape();
  int64_t src_offset = x.offset(), dst_offset = 0;
  for (size_t i = 0; i < pads.size() / 2; ++i) {
    int64_t d = x.dim() - 1 - static_cast<int64_t>(i), lo = pads[2 * i], hi = pads[2 * i + 1];
    out_shape[d] = x.shape()[d] + lo + hi;
    KILN_CHECK(out_shape[d] >= 0, "pad: padding (", lo, ", ", hi, ") makes dimension ", d, " of ",
               shape_str(x.shape()), " negative");
  }
  Tensor out = Tensor::full(out_shape, value, x.dtype());
  for (size_t i = 0; i < pads.size() / 2; ++i) {
    int64_t d = x.dim() - 1 - static_cast<int64_t>(i), lo = pads[2 * i], hi = pads[2 * i + 1];
    int64_t src_begin = std::max<int64_t>(0, -lo), src_end = x.shape()[d] - std::max<int64_t>(0, -hi);
    region[d] = std::max<int64_t>(0, src_end - src_begin);
    src_offset += src_begin * x.strides()[d];
    dst_offset += std::max<int64_t>(0, lo) * out.strides()[d];
  }
  if (numel(region) > 0)
    copy_into(out.as_strided(region, out.strides(), dst_offset), x.as_strided(region, x.strides(), src_offset));
  std::vector<int64_t> inverse(pads.size());
  for (size_t i = 0; i < pads.size(); ++i) inverse[i] = -pads[i];
  return record("pad", {x}, out, [inverse](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{pad(g, inverse, 0.0)};  // crop back; cropped-away inputs get zero
  });
}

namespace {

// a ranks before b in topk order (by value, then by lower index).
template <bool kLargest, typename T>
inline bool ranks_before(T va, int64_t a, T vb, int64_t b) {
  bool nan_a = va != va, nan_b = vb != vb;
  if (nan_a || nan_b) {
    if (nan_a && nan_b) return a < b;
    return kLargest ? nan_a : nan_b;  // NaN is the largest value
  }
  if (va != vb) return kLargest ? va > vb : va < vb;
  return a < b;
}

// Small k (the usual top-1/top-5 accuracy): one pass keeping a sorted buffer of the best k, written
// straight into the output row; a candidate is compared with the current k-th first, so most
// elements cost one comparison. Large k: partial_sort of the indices.
template <bool kLargest, typename T>
void topk_rows(const T* x, int64_t rows, int64_t len, int64_t k, T* values, int64_t* indices) {
  constexpr int64_t kSmallK = 16;
  parallel_for(0, rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(len, 1)), [&](int64_t lo, int64_t hi) {
    std::vector<int64_t> order(k <= kSmallK ? 0 : static_cast<size_t>(len));
    for (int64_t r = lo; r < hi; ++r) {
      const T* row = x + r * len;
      T* v = values + r * k;
      int64_t* at = indices + r * k;
      if (k <= kSmallK) {
        int64_t count = 0;
        for (int64_t i = 0; i < len; ++i) {
          T xi = row[i];
          if (count == k && !ranks_before<kLargest>(xi, i, v[k - 1], at[k - 1])) continue;
          int64_t j = count < k ? count++ : k - 1;  // slot to fill, then bubble it up
          for (; j > 0 && ranks_before<kLargest>(xi, i, v[j - 1], at[j - 1]); --j) {
            v[j] = v[j - 1];
            at[j] = at[j - 1];
          }
          v[j] = xi;
          at[j] = i;
        }
        continue;
      }
      std::iota(order.begin(), order.end(), int64_t{0});
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [row](int64_t a, int64_t b) {
        return ranks_before<kLargest>(row[a], a, row[b], b);
      });
      for (int64_t j = 0; j < k; ++j) {
        v[j] = row[order[j]];
        at[j] = order[j];
      }
    }
  });
}

}  // namespace

std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  KILN_CHECK(x.defined(), "topk: input is undefined");
  KILN_CHECK_TYPE(x.dtype() != DType::b8, "topk: not implemented for bool tensors");
  int64_t d = wrap_dim(dim, x.dim(), "topk");
  int64_t size = x.dim() == 0 ? 1 : x.shape()[d];
  KILN_CHECK(k >= 0 && k <= size, "topk: k = ", k, " is out of range for dimension ", d, " of ", shape_str(x.shape()),
             " (size ", size, ")");
  KILN_CHECK(x.dim() > 0 || k == 1, "topk: k must be 1 for a zero-dimensional tensor, got ", k);
  DType compute = x.dtype() == DType::f16 || x.dtype() == DType::bf16 ? DType::f32 : x.dtype();
  Tensor xc = to_dtype_raw(x, compute);
  // Move `dim` last: rows of `size` contiguous elements.
  Shape perm_shape;
  Strides perm_strides;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (i != d) {
      perm_shape.push_back(x.shape()[i]);
      perm_strides.push_back(xc.strides()[i]);
    }
  int64_t rows = numel(perm_shape);
  perm_shape.push_back(size);
  perm_strides.push_back(x.dim() == 0 ? 1 : xc.strides()[d]);
  Tensor data = contiguous_raw(xc.as_strided(perm_shape, perm_strides, xc.offset()));
  perm_shape.back() = k;
  Tensor values = Tensor::empty(perm_shape, compute), indices = Tensor::empty(perm_shape, DType::i64);
  if (rows > 0 && k > 0) {
    dispatch_numeric(compute, "topk", [&]<typename T>() {
      if (largest)
        topk_rows<true>(data.data<T>(), rows, size, k, values.data<T>(), indices.data<int64_t>());
      else
        topk_rows<false>(data.data<T>(), rows, size, k, values.data<T>(), indices.data<int64_t>());
    });
  }
  // Back to the input's dim order (a copy only when dim was not last).
  Shape out_shape = x.shape();
  if (x.dim() > 0) out_shape[d] = k;
  auto restore = [&](const Tensor& t) {
    if (x.dim() == 0) return t.as_strided({}, {}, 0);
    Strides cs = contiguous_strides(perm_shape), st(x.dim());
    for (int64_t i = 0, j = 0; i < x.dim(); ++i) st[i] = i == d ? cs.back() : cs[j++];
    return contiguous_raw(t.as_strided(out_shape, st, 0));
  };
  values = to_dtype_raw(restore(values), x.dtype());
  indices = restore(indices);
  if (any_requires_grad({x})) {
    record("topk", {x}, {&values, &indices},
           [d, in_shape = x.shape(), idx_ = SavedTensor(indices, "topk")](const std::vector<Tensor>& grads,
                                                                           const std::vector<bool>&) {
             const Tensor& g = grads[0];
             if (in_shape.empty()) return std::vector<Tensor>{g};
             return std::vector<Tensor>{scatter_add(Tensor::zeros(in_shape, g.dtype()), d, idx_.get(), g)};
           });
  }
  return {values, indices};
}

}  // namespace kiln::ops
