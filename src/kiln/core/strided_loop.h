// Walks N operands that share one logical shape but have their own strides (in elements; 0 for a
// broadcast dim). Adjacent dims that are contiguous in every operand are merged first, so the
// common cases (all contiguous, bias broadcast along rows) become one long inner run that the
// kernel's inner loop can vectorise. The inner callback gets each operand's element offset at the
// start of a run, each operand's stride within the run, and the run length.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "kiln/core/shape.h"

namespace kiln {

template <size_t N>
struct StridedLayout {
  Shape shape;                          // coalesced
  std::array<Strides, N> strides;       // coalesced, per operand

  StridedLayout(const Shape& s, const std::array<Strides, N>& st) {
    for (size_t d = 0; d < s.size(); ++d) {
      if (s[d] == 1) continue;  // a size-1 dim never moves any pointer
      bool merge = !shape.empty();
      for (size_t k = 0; k < N && merge; ++k)
        merge = strides[k].back() == st[k][d] * s[d];
      if (merge) {
        shape.back() *= s[d];
        for (size_t k = 0; k < N; ++k) strides[k].back() = st[k][d];
      } else {
        shape.push_back(s[d]);
        for (size_t k = 0; k < N; ++k) strides[k].push_back(st[k][d]);
      }
    }
    if (shape.empty()) {  // a scalar or all-ones shape: one run of length 1
      shape.push_back(1);
      for (size_t k = 0; k < N; ++k) strides[k].push_back(0);
    }
  }

  // inner(offsets, inner_strides, run_length) over the linear range [begin, end).
  template <typename Fn>
  void for_each_run(int64_t begin, int64_t end, Fn&& inner) const {
    const size_t nd = shape.size();
    std::vector<int64_t> idx(nd, 0);
    int64_t rem = begin;
    for (size_t d = nd; d-- > 0;) {
      idx[d] = rem % shape[d];
      rem /= shape[d];
    }
    std::array<int64_t, N> off{};
    for (size_t k = 0; k < N; ++k)
      for (size_t d = 0; d < nd; ++d) off[k] += idx[d] * strides[k][d];
    std::array<int64_t, N> inner_stride;
    for (size_t k = 0; k < N; ++k) inner_stride[k] = strides[k][nd - 1];
    int64_t pos = begin;
    while (pos < end) {
      int64_t run = std::min(shape[nd - 1] - idx[nd - 1], end - pos);
      inner(off, inner_stride, run);
      pos += run;
      for (size_t k = 0; k < N; ++k) off[k] += run * inner_stride[k];
      idx[nd - 1] += run;
      // carry into outer dims
      for (size_t d = nd - 1; d > 0 && idx[d] == shape[d]; --d) {
        for (size_t k = 0; k < N; ++k) off[k] += strides[k][d - 1] - shape[d] * strides[k][d];
        idx[d] = 0;
        ++idx[d - 1];
      }
    }
  }
};

}  // namespace kiln
