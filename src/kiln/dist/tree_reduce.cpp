#include "kiln/dist/tree_reduce.h"

#include <algorithm>

#include "kiln/core/error.h"

namespace kiln::dist {

namespace {
template <typename T>
void combine_as(T* dst, const T* src, int64_t n, ReduceOp op) {
  // One operation per element, no reassociation: the bits depend only on the two operands.
  switch (op) {
    case ReduceOp::sum:
      for (int64_t i = 0; i < n; ++i) dst[i] = dst[i] + src[i];
      break;
    case ReduceOp::max:
      for (int64_t i = 0; i < n; ++i) dst[i] = std::max(dst[i], src[i]);
      break;
    case ReduceOp::min:
      for (int64_t i = 0; i < n; ++i) dst[i] = std::min(dst[i], src[i]);
      break;
  }
}
}  // namespace

void combine(void* dst, const void* src, int64_t n, DType dtype, ReduceOp op) {
  switch (dtype) {
    case DType::f32: return combine_as(static_cast<float*>(dst), static_cast<const float*>(src), n, op);
    case DType::f64: return combine_as(static_cast<double*>(dst), static_cast<const double*>(src), n, op);
    case DType::i64: return combine_as(static_cast<int64_t*>(dst), static_cast<const int64_t*>(src), n, op);
    default: KILN_CHECK_TYPE(false, "dist: reductions take f32, f64 or i64 tensors, got ", dtype_name(dtype));
  }
}

void tree_reduce(const std::vector<void*>& leaves, int64_t n, DType dtype, ReduceOp op) {
  const int k = static_cast<int>(leaves.size());
  if (k <= 1) return;
  const int p = largest_power_of_two_at_most(k);
  for (int i = 0; i < k - p; ++i) combine(leaves[i], leaves[i + p], n, dtype, op);
  for (int d = p / 2; d >= 1; d /= 2)
    for (int i = 0; i < d; ++i) combine(leaves[i], leaves[i + d], n, dtype, op);
}

}  // namespace kiln::dist
