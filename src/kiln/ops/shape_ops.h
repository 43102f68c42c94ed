// Ops that rearrange elements. The view ops (reshape of a compatible layout, view, squeeze,
// unsqueeze, permute, transpose, slice, expand) share storage with their input; the rest copy.
// All are differentiable.
#pragma once

#include <utility>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::ops {

// One dim may be -1 (inferred). A view when the strides allow it, a copy otherwise.
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
// Elements start, start+step, ... < end along `dim`; negative start/end count from the end and
// are clamped to the dim's size, as in Python slicing.
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor expand(const Tensor& x, const Shape& shape);  // -1 keeps a dim; new leading dims allowed

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);  // index: i64 or i32, 1-d
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);        // out[i][j] = x[i][index[i][j]] (dim 1)
// out = x with src added at index along dim (duplicates accumulate).
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim);  // last part may be smaller
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
// pads = {last_lo, last_hi, second_last_lo, second_last_hi, ...} as in torch.nn.functional.pad;
// constant mode.
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value = 0.0);
// The k largest (or smallest) values along dim, sorted, with i64 indices.
std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true);

}  // namespace kiln::ops
