// Forward-only indexing, rearrangement and small normalisation ops that imported (ONNX) graphs
// need, with ONNX semantics (ScatterElements, ScatterND, GatherND, Compress, DepthToSpace,
// SpaceToDepth, ReverseSequence, NonZero, Unique, LRN, MeanVarianceNormalization, Det). None
// records autograd history. Ops that only move elements take every dtype; index tensors are i32
// or i64 and may be negative (counting from the end of their dim), as ONNX allows.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::ops {

// How a scatter combines an update with the element already there. none: the update replaces it
// (with duplicate indices the last update in row-major order wins); add/mul/max/min: the updates
// fold into the element in row-major order (bool: add = or, mul = and).
enum class ScatterReduction { none, add, mul, max, min };
ScatterReduction scatter_reduction_from_name(std::string_view name);  // "none", "add", "mul", "max", "min"

// A copy of data with data[i][indices[i][j]][k] (axis 1; likewise for any axis) combined with
// updates[i][j][k]. indices and updates share one shape, of data's rank, with every dim other
// than axis no larger than data's.
Tensor scatter_elements(const Tensor& data, const Tensor& indices, const Tensor& updates, int64_t axis = 0,
                        ScatterReduction reduction = ScatterReduction::none);

// data (d0, ..., d{r-1}); indices (i0, ..., i{q-2}, k) with k <= r; updates (i0, ..., i{q-2},
// d{k}, ..., d{r-1}). A copy of data with each slice data[indices[i...]] combined with
// updates[i...].
Tensor scatter_nd(const Tensor& data, const Tensor& indices, const Tensor& updates,
                  ScatterReduction reduction = ScatterReduction::none);

// data (b..., d{b}, ..., d{r-1}); indices (b..., i..., k) sharing the first batch_dims dims with
// data, k <= r - batch_dims -> (b..., i..., d{b+k}, ..., d{r-1}): the slices that the index rows
// pick from their batch's data.
Tensor gather_nd(const Tensor& data, const Tensor& indices, int64_t batch_dims = 0);

// The slices of x along axis (of flattened x without an axis) whose condition element is true
// (nonzero); condition is 1-d and may be shorter than the dim (the slices past it are dropped).
Tensor compress(const Tensor& x, const Tensor& condition, std::optional<int64_t> axis = std::nullopt);

// x (N, C, H, W) -> (N, C / b^2, H * b, W * b). DCR (crd = false) reads the channel as (depth
// row, depth column, channel); CRD as (channel, row, column).
Tensor depth_to_space(const Tensor& x, int64_t blocksize, bool crd = false);
// x (N, C, H, W) -> (N, C * b^2, H / b, W / b); the inverse of depth_to_space in DCR mode.
Tensor space_to_depth(const Tensor& x, int64_t blocksize);

// x has a batch and a time axis among its first two dims (batch_axis != time_axis, both 0 or 1);
// for batch entry b the first sequence_lens[b] time steps are reversed, the rest copied.
Tensor reverse_sequence(const Tensor& x, const Tensor& sequence_lens, int64_t batch_axis = 1,
                        int64_t time_axis = 0);

// (rank, count) i64: the coordinates of x's nonzero elements in row-major order (NaN counts as
// nonzero). A scalar is read as a one-element vector, as NumPy does.
Tensor nonzero(const Tensor& x);

struct UniqueResult {
  Tensor values;           // x's dtype: the unique elements (1-d) or slices along axis
  Tensor indices;          // i64 (U): where each value first occurs in x (along axis)
  Tensor inverse_indices;  // i64 (x.numel() or x.size(axis)): the value each element / slice is
  Tensor counts;           // i64 (U): how often each value occurs
};
// The unique elements of flattened x, or the unique slices of x along axis; sorted ascending
// (slices lexicographically) or in order of first occurrence.
UniqueResult unique(const Tensor& x, std::optional<int64_t> axis = std::nullopt, bool sorted = true);

// Local response normalisation across channels of x (N, C, d...):
//   y = x / (bias + alpha / size * sum of x^2 over channels [c - (size-1)/2, c + ceil((size-1)/2)])^beta.
// f32 or f64 (f16/bf16 through f32).
Tensor lrn(const Tensor& x, int64_t size, double alpha = 1e-4, double beta = 0.75, double bias = 1.0);

// (x - mean) / (sqrt(var) + 1e-9), mean and biased variance over `axes` (ONNX's function body).
// f32 or f64 (f16/bf16 through f32).
Tensor mean_variance_norm(const Tensor& x, const std::vector<int64_t>& axes = {0, 2, 3});

// Determinants of x (..., M, M) -> (...), by LU with partial pivoting in f64. f32 or f64 (f16/bf16
// through f32).
Tensor det(const Tensor& x);

}  // namespace kiln::ops
