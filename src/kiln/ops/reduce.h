// Reductions over any set of dims (empty = all dims), with keepdim. Sums accumulate in a fixed
// order (fixed chunks combined in chunk order), so results are bitwise reproducible.
#pragma once

#include <utility>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::ops {

using Dims = std::vector<int64_t>;

Tensor sum(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
// Variance with Bessel's correction when `unbiased` (divides by n-1).
Tensor var(const Tensor& x, const Dims& dims = {}, bool unbiased = true, bool keepdim = false);
Tensor logsumexp(const Tensor& x, const Dims& dims, bool keepdim = false);
Tensor amax(const Tensor& x, const Dims& dims = {}, bool keepdim = false);  // gradient to the first max

// Values and i64 indices of the max/min along one dim (first occurrence wins ties).
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);

}  // namespace kiln::ops
