// cat, stack and split: joining tensors along a dim and cutting one apart. cat copies each input
// into its window of the output (copy_into handles strides and dtype conversion); split returns
// slice views, so its parts share storage with the input, as in PyTorch.
#include <numeric>

#include "kiln/ops/autograd_record.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/shape_ops.h"
#include "kiln/ops/trace.h"

namespace kiln::ops {

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  TracedOp trace_;
  KILN_CHECK(!xs.empty(), "cat: expected a non-empty list of tensors");
  for (size_t i = 0; i < xs.size(); ++i) KILN_CHECK(xs[i].defined(), "cat: tensor ", i, " is undefined");
  const Tensor& first = xs[0];
  KILN_CHECK(first.dim() > 0, "cat: a zero-dimensional tensor cannot be concatenated\nhelp: use stack");
  int64_t d = wrap_dim(dim, first.dim(), "cat");
  DType dt = first.dtype();
  int64_t total = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    KILN_CHECK(x.dim() == first.dim(), "cat: tensor ", i, " has shape ", shape_str(x.shape()), " but tensor 0 has ",
               shape_str(first.shape()), " (all inputs need the same number of dims)");
    for (int64_t k = 0; k < x.dim(); ++k)
      KILN_CHECK(k == d || x.shape()[k] == first.shape()[k], "cat: sizes must match except in dimension ", d,
                 ": tensor 0 has shape ", shape_str(first.shape()), ", tensor ", i, " has shape ", shape_str(x.shape()));
    dt = promote_types(dt, x.dtype());
    total += x.shape()[d];
  }
  Shape out_shape = first.shape();
  out_shape[d] = total;
  Tensor out = Tensor::empty(out_shape, dt);
  std::vector<int64_t> sizes;
  std::vector<DType> dtypes;
  int64_t pos = 0;
  for (const Tensor& x : xs) {
    int64_t n = x.shape()[d];
    if (x.numel() > 0) copy_into(out.as_strided(x.shape(), out.strides(), pos * out.strides()[d]), x);
    pos += n;
    sizes.push_back(n);
    dtypes.push_back(x.dtype());
  }
  return traced(trace_, "cat", xs,
                           record("cat", xs, out,
                                  [d, sizes, dtypes](const Tensor& g, const std::vector<bool>& need) {
                                    std::vector<Tensor> grads(sizes.size());
                                    int64_t start = 0;
                                    for (size_t i = 0; i < sizes.size(); ++i) {
                                      if (need[i]) grads[i] = to(slice(g, d, start, start + sizes[i]), dtypes[i]);
                                      start += sizes[i];
                                    }
                                    return grads;
                                  }),
                           {{"axis", dim}});
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  KILN_CHECK(!xs.empty(), "stack: expected a non-empty list of tensors");
  for (size_t i = 0; i < xs.size(); ++i) {
    KILN_CHECK(xs[i].defined(), "stack: tensor ", i, " is undefined");
    KILN_CHECK(xs[i].shape() == xs[0].shape(), "stack: all tensors must have the same shape, got ",
               shape_str(xs[0].shape()), " at entry 0 and ", shape_str(xs[i].shape()), " at entry ", i);
  }
  int64_t d = wrap_dim(dim, xs[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  parts.reserve(xs.size());
  for (const Tensor& x : xs) parts.push_back(unsqueeze(x, d));
  return cat(parts, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  KILN_CHECK(x.dim() > 0, "split: cannot split a zero-dimensional tensor");
  int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t size = x.shape()[d];
  KILN_CHECK(split_size > 0 || (split_size == 0 && size == 0), "split: split_size must be positive, got ",
             split_size, " for dimension ", d, " of ", shape_str(x.shape()));
  std::vector<Tensor> parts;
  for (int64_t start = 0; start < size; start += split_size)
    parts.push_back(slice(x, d, start, std::min(start + split_size, size)));
  if (parts.empty()) parts.push_back(slice(x, d, 0, 0));
  return parts;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  KILN_CHECK(x.dim() > 0, "split: cannot split a zero-dimensional tensor");
  int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    KILN_CHECK(s >= 0, "split: sizes must be non-negative, got ", shape_str(sizes));
    total += s;
  }
  KILN_CHECK(total == x.shape()[d], "split: sizes ", shape_str(sizes), " sum to ", total, " but dimension ", d,
             " of ", shape_str(x.shape()), " has size ", x.shape()[d]);
  std::vector<Tensor> parts;
  int64_t start = 0;
  for (int64_t s : sizes) {
    parts.push_back(slice(x, d, start, start + s));
    start += s;
  }
  return parts;
}

}  // namespace kiln::ops
