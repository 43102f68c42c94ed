// sum and mean: the reductions every backward pass needs (broadcast adjoints, bias gradients).
// Two layouts are fast: reducing trailing dims (rows, f64-accumulated per row) and reducing
// leading dims of a contiguous tensor (column sums, as for a bias gradient); anything else is
// permuted into the row layout first. Both sum in a fixed order for any thread count.
#include <algorithm>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/autograd_record.h"
#include "kiln/ops/cpu/float_kernels.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/reduce.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::ops {

namespace {

constexpr int64_t kReduceGrain = 1 << 14;

struct ReducePlan {
  std::vector<bool> reduced;  // per input dim
  Shape out_shape;            // with keepdim
  Shape out_shape_squeezed;
  int64_t count = 1;          // elements reduced into each output
};

ReducePlan plan_reduce(const Tensor& x, const Dims& dims, const char* op) {
  ReducePlan p;
  p.reduced.assign(x.dim(), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, x.dim(), op);
    if (x.dim() == 0) continue;  // dim 0 / -1 of a 0-d tensor is the tensor itself
    KILN_CHECK(!p.reduced[w] || dims.empty(), op, ": dimension ", d, " listed twice");
    p.reduced[w] = true;
  }
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (p.reduced[d]) {
      p.count *= x.shape()[d];
      p.out_shape.push_back(1);
    } else {
      p.out_shape.push_back(x.shape()[d]);
      p.out_shape_squeezed.push_back(x.shape()[d]);
    }
  }
  return p;
}

template <typename T, typename Acc>
void sum_rows(const T* x, T* out, int64_t rows, int64_t len) {
  parallel_for(0, rows, std::max<int64_t>(1, kReduceGrain / std::max<int64_t>(len, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* row = x + r * len;
      if constexpr (std::is_same_v<T, float>) {
        out[r] = static_cast<float>(cpu::float_kernels().sum(row, len));
      } else {
        Acc acc = 0;
        for (int64_t i = 0; i < len; ++i) acc += static_cast<Acc>(row[i]);
        out[r] = static_cast<T>(acc);
      }
    }
  });
}

// out[j] = sum_i x[i * cols + j]: each thread owns a range of columns and walks all rows in order.
template <typename T, typename Acc>
void sum_columns(const T* x, T* out, int64_t rows, int64_t cols) {
  parallel_for(0, cols, std::max<int64_t>(16, kReduceGrain / std::max<int64_t>(rows, 1)), [&](int64_t lo, int64_t hi) {
    std::vector<Acc> acc(static_cast<size_t>(hi - lo), Acc(0));
    for (int64_t i = 0; i < rows; ++i) {
      const T* row = x + i * cols + lo;
      Acc* a = acc.data();
      for (int64_t j = 0; j < hi - lo; ++j) a[j] += static_cast<Acc>(row[j]);
    }
    for (int64_t j = lo; j < hi; ++j) out[j] = static_cast<T>(acc[j - lo]);
  });
}

Tensor sum_forward(const Tensor& x, const ReducePlan& p) {
  DType out_dtype = is_floating(x.dtype()) ? (x.dtype() == DType::f64 ? DType::f64 : DType::f32) : DType::i64;
  Tensor xc = to_dtype_raw(x, out_dtype);
  Tensor out = Tensor::zeros(p.out_shape, out_dtype);
  if (x.numel() == 0) return out;
  // Leading dims reduced, trailing kept, contiguous input: column sums.
  int64_t lead = 0;
  while (lead < x.dim() && p.reduced[lead]) ++lead;
  bool rest_kept = std::none_of(p.reduced.begin() + lead, p.reduced.end(), [](bool b) { return b; });
  dispatch_numeric(out_dtype, "sum", [&]<typename T>() {
    using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
    if (lead > 0 && rest_kept && xc.is_contiguous() && lead < x.dim()) {
      int64_t rows = 1;
      for (int64_t d = 0; d < lead; ++d) rows *= x.shape()[d];
      sum_columns<T, Acc>(xc.data<T>(), out.data<T>(), rows, x.numel() / rows);
      return;
    }
    std::vector<int64_t> order;
    for (int64_t d = 0; d < x.dim(); ++d)
      if (!p.reduced[d]) order.push_back(d);
    for (int64_t d = 0; d < x.dim(); ++d)
      if (p.reduced[d]) order.push_back(d);
    Tensor perm = xc.as_strided([&] {
      Shape s;
      for (int64_t d : order) s.push_back(x.shape()[d]);
      return s;
    }(), [&] {
      Strides s;
      for (int64_t d : order) s.push_back(xc.strides()[d]);
      return s;
    }(), xc.offset());
    Tensor rows = contiguous_raw(perm);
    sum_rows<T, Acc>(rows.data<T>(), out.data<T>(), out.numel(), p.count);
  });
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const Dims& dims, bool keepdim) {
  ReducePlan p = plan_reduce(x, dims, "sum");
  Tensor out = sum_forward(x, p);
  if (!keepdim) out = out.as_strided(p.out_shape_squeezed, contiguous_strides(p.out_shape_squeezed), 0);
  Shape in_shape = x.shape(), kept = p.out_shape;
  return record("sum", {x}, out, [in_shape, kept](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{contiguous(expand(reshape(g, kept), in_shape))};
  });
}

Tensor mean(const Tensor& x, const Dims& dims, bool keepdim) {
  KILN_CHECK_TYPE(is_floating(x.dtype()), "mean: expected a floating-point tensor, got ", dtype_name(x.dtype()));
  ReducePlan p = plan_reduce(x, dims, "mean");
  KILN_CHECK(p.count > 0, "mean: reducing over an empty dimension of ", shape_str(x.shape()));
  return div(sum(x, dims, keepdim), static_cast<double>(p.count));
}

}  // namespace kiln::ops
