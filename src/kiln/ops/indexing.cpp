// index_select, gather and scatter_add. Two raw kernels do all the work: a gather that reads
// x at indexed positions (index_select is a gather with the index broadcast along the other
// dims), and a scatter-add that is the adjoint of both. The scatter runs threads over positions
// that differ outside `dim` (they can never hit the same output element) and walks `dim` in order
// inside each, so duplicate indices accumulate in a fixed order: results do not depend on threads.
#include "kiln/core/strided_loop.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/autograd_record.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::ops {

namespace {

constexpr int64_t kIndexGrain = 1 << 14;

// The index as contiguous i64, after checking its dtype and that every value is in [0, size).
Tensor checked_index(const Tensor& index, int64_t size, int64_t dim, const char* op) {
  KILN_CHECK(index.defined(), op, ": index is undefined");
  KILN_CHECK_TYPE(index.dtype() == DType::i64 || index.dtype() == DType::i32, op,
                  ": index must be an i64 or i32 tensor, got ", dtype_name(index.dtype()));
  Tensor idx = contiguous_raw(to_dtype_raw(index, DType::i64));
  const int64_t* p = idx.data<int64_t>();
  for (int64_t i = 0; i < idx.numel(); ++i)
    KILN_CHECK_INDEX(p[i] >= 0 && p[i] < size, op, ": index ", p[i], " is out of range for dimension ", dim,
                     " with size ", size);
  return idx;
}

// out[p] = x[p with coordinate `dim` replaced by idx[p]] for every position p of out's shape.
// idx has out's shape (possibly broadcast with zero strides); x may be any strided layout.
void gather_raw(const Tensor& out, const Tensor& x, const Tensor& idx, int64_t dim) {
  if (out.numel() == 0) return;
  Strides xs = x.strides();
  int64_t x_dim_stride = xs[dim];
  xs[dim] = 0;
  StridedLayout<3> layout(out.shape(), {out.strides(), xs, idx.strides()});
  dispatch_all(x.dtype(), [&]<typename T>() {
    T* po = static_cast<T*>(out.raw_data());
    const T* px = static_cast<const T*>(x.raw_data());
    const int64_t* pi = idx.data<int64_t>();
    parallel_for(0, out.numel(), kIndexGrain, [&](int64_t lo, int64_t hi) {
      layout.for_each_run(lo, hi, [&](const auto& off, const auto& st, int64_t n) {
        for (int64_t i = 0; i < n; ++i)
          po[off[0] + i * st[0]] = px[off[1] + i * st[1] + pi[off[2] + i * st[2]] * x_dim_stride];
      });
    });
  });
}

// out[p with coordinate `dim` replaced by idx[p]] += src[p] for every position p of idx's shape.
void scatter_add_raw(const Tensor& out, int64_t dim, const Tensor& idx, const Tensor& src) {
  if (idx.numel() == 0) return;
  Shape positions = idx.shape();
  int64_t len = positions[dim];
  positions[dim] = 1;  // threads split the positions outside `dim`; each walks `dim` in order
  StridedLayout<3> layout(positions, {out.strides(), idx.strides(), src.strides()});
  int64_t o_dim = out.strides()[dim], i_dim = idx.strides()[dim], s_dim = src.strides()[dim];
  dispatch_numeric(out.dtype(), "scatter_add", [&]<typename T>() {
    T* po = out.data<T>();
    const int64_t* pi = idx.data<int64_t>();
    const T* ps = src.data<T>();
    int64_t grain = std::max<int64_t>(1, kIndexGrain / std::max<int64_t>(len, 1));
    parallel_for(0, numel(positions), grain, [&](int64_t lo, int64_t hi) {
      layout.for_each_run(lo, hi, [&](const auto& off, const auto& st, int64_t n) {
        for (int64_t i = 0; i < n; ++i) {
          T* o = po + off[0] + i * st[0];
          const int64_t* ix = pi + off[1] + i * st[1];
          const T* s = ps + off[2] + i * st[2];
          for (int64_t k = 0; k < len; ++k) o[ix[k * i_dim] * o_dim] += s[k * s_dim];
        }
      });
    });
  });
}

// A 1-d index of length shape[dim] seen as a tensor of `shape` (zero strides elsewhere).
Tensor broadcast_index(const Tensor& idx, const Shape& shape, int64_t dim) {
  Strides st(shape.size(), 0);
  st[dim] = 1;
  return idx.as_strided(shape, st, idx.offset());
}

// The part of `t` covered by `shape` (shape[d] <= t.shape()[d] for every d), as a view.
Tensor leading_window(const Tensor& t, const Shape& shape) {
  return shape == t.shape() ? t : t.as_strided(shape, t.strides(), t.offset());
}

void check_same_rank(const char* op, const char* what, const Tensor& x, const Tensor& other) {
  KILN_CHECK(other.dim() == x.dim(), op, ": ", what, " ", shape_str(other.shape()), " must have as many dims as x ",
             shape_str(x.shape()));
}

}  // namespace

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  KILN_CHECK(x.dim() >= 1, "index_select: expected a tensor with at least 1 dim, got shape ", shape_str(x.shape()));
  int64_t d = wrap_dim(dim, x.dim(), "index_select");
  KILN_CHECK(index.defined() && index.dim() <= 1, "index_select: index must be 1-d, got shape ",
             index.defined() ? shape_str(index.shape()) : "undefined");
  Tensor idx = checked_index(index, x.shape()[d], d, "index_select");
  Shape out_shape = x.shape();
  out_shape[d] = idx.numel();
  Tensor out = Tensor::empty(out_shape, x.dtype());
  gather_raw(out, x, broadcast_index(idx, out_shape, d), d);
  if (!any_requires_grad({x})) return out;
  return record("index_select", {x}, out, [in_shape = x.shape(), d, idx_ = SavedTensor(idx, "index_select")](
                                              const Tensor& g, const std::vector<bool>&) {
    Tensor gc = contiguous_raw(g);
    Tensor gx = Tensor::zeros(in_shape, g.dtype());
    scatter_add_raw(gx, d, broadcast_index(idx_.get(), gc.shape(), d), gc);
    return std::vector<Tensor>{gx};
  });
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  KILN_CHECK(x.dim() >= 1, "gather: expected a tensor with at least 1 dim, got shape ", shape_str(x.shape()));
  int64_t d = wrap_dim(dim, x.dim(), "gather");
  KILN_CHECK(index.defined(), "gather: index is undefined");
  check_same_rank("gather", "index", x, index);
  for (int64_t k = 0; k < x.dim(); ++k)
    KILN_CHECK(k == d || index.shape()[k] <= x.shape()[k], "gather: index ", shape_str(index.shape()),
               " is larger than x ", shape_str(x.shape()), " in dimension ", k, " (only dimension ", d, " may differ)");
  Tensor idx = checked_index(index, x.shape()[d], d, "gather");
  Tensor out = Tensor::empty(idx.shape(), x.dtype());
  gather_raw(out, x, idx, d);
  if (!any_requires_grad({x})) return out;
  return record("gather", {x}, out, [in_shape = x.shape(), d, idx_ = SavedTensor(idx, "gather")](
                                        const Tensor& g, const std::vector<bool>&) {
    Tensor gx = Tensor::zeros(in_shape, g.dtype());
    scatter_add_raw(gx, d, idx_.get(), contiguous_raw(g));
    return std::vector<Tensor>{gx};
  });
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  KILN_CHECK(x.dim() >= 1, "scatter_add: expected a tensor with at least 1 dim, got shape ", shape_str(x.shape()));
  int64_t d = wrap_dim(dim, x.dim(), "scatter_add");
  KILN_CHECK(index.defined() && src.defined(), "scatter_add: index and src must be defined");
  check_same_rank("scatter_add", "index", x, index);
  check_same_rank("scatter_add", "src", x, src);
  KILN_CHECK_TYPE(src.dtype() == x.dtype(), "scatter_add: src dtype ", dtype_name(src.dtype()), " differs from x dtype ",
                  dtype_name(x.dtype()));
  for (int64_t k = 0; k < x.dim(); ++k) {
    KILN_CHECK(index.shape()[k] <= src.shape()[k], "scatter_add: index ", shape_str(index.shape()),
               " is larger than src ", shape_str(src.shape()), " in dimension ", k);
    KILN_CHECK(k == d || index.shape()[k] <= x.shape()[k], "scatter_add: index ", shape_str(index.shape()),
               " is larger than x ", shape_str(x.shape()), " in dimension ", k, " (only dimension ", d, " may differ)");
  }
  Tensor idx = checked_index(index, x.shape()[d], d, "scatter_add");
  Tensor out = clone_raw(x);
  scatter_add_raw(out, d, idx, leading_window(src, idx.shape()));
  if (!any_requires_grad({x, src})) return out;
  return record("scatter_add", {x, src}, out, [d, src_shape = src.shape(), idx_ = SavedTensor(idx, "scatter_add")](
                                                  const Tensor& g, const std::vector<bool>& need) {
    Tensor gsrc;
    if (need[1]) {
      const Tensor& idx = idx_.get();
      Tensor picked = Tensor::empty(idx.shape(), g.dtype());
      gather_raw(picked, g, idx, d);
      if (idx.shape() == src_shape) {
        gsrc = picked;
      } else {  // src elements the index does not reach get no gradient
        gsrc = Tensor::zeros(src_shape, g.dtype());
        copy_into(leading_window(gsrc, idx.shape()), picked);
      }
    }
    return std::vector<Tensor>{need[0] ? g : Tensor(), gsrc};
  });
}

}  // namespace kiln::ops
