// Rearrangements from indexing_extra.h: compress, depth_to_space, space_to_depth,
// reverse_sequence and nonzero. Forward only, every dtype: the copies move whole contiguous
// blocks as bytes, and the block permutations are one strided copy_into of a permuted view.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/indexing_extra.h"

namespace kiln::ops {

namespace {

constexpr int64_t kGrain = 1 << 14;

// Copies contiguous x, read as `view` (row-major) and permuted by `perm`, into a fresh tensor of
// `out_shape` (whose element count matches): a reshape-transpose-reshape in one strided copy.
Tensor permuted_copy(const Tensor& x, const Shape& view, const std::vector<int64_t>& perm, const Shape& out_shape) {
  Tensor xc = contiguous_raw(x);
  Strides vs = contiguous_strides(view);
  Shape ps;
  Strides pst;
  for (int64_t p : perm) {
    ps.push_back(view[p]);
    pst.push_back(vs[p]);
  }
  Tensor out = Tensor::empty(out_shape, x.dtype());
  if (out.numel() > 0) copy_into(out.as_strided(ps, contiguous_strides(ps), 0), xc.as_strided(ps, pst, xc.offset()));
  return out;
}

template <typename T>
inline bool is_nonzero(T v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) return to_double(v) != 0.0;
  else return v != T(0);  // NaN != 0: NaN counts as nonzero
}

}  // namespace

// ---------------------------------------------------------------- compress

Tensor compress(const Tensor& x, const Tensor& condition, std::optional<int64_t> axis) {
  KILN_CHECK(x.defined() && condition.defined(), "compress: input and condition must be defined");
  KILN_CHECK(condition.dim() == 1, "compress: condition must be 1-d, got ", shape_str(condition.shape()));
  KILN_CHECK(!axis || x.dim() >= 1, "compress: an axis needs an input of rank >= 1, got a scalar");
  Tensor src = contiguous_raw(x);
  const int64_t ax = axis ? wrap_dim(*axis, x.dim(), "compress") : 0;
  const Shape in_shape = axis ? x.shape() : Shape{x.numel()};
  const int64_t n = in_shape[ax];
  KILN_CHECK(condition.numel() <= n, "compress: condition has ", condition.numel(), " elements, more than the ", n,
             axis ? " slices along the axis of input " : " elements of input ", shape_str(x.shape()));
  std::vector<int64_t> keep;  // the selected slices, in order
  dispatch_all(condition.dtype(), [&]<typename T>() {
    Tensor c = contiguous_raw(condition);
    const T* pc = c.data<T>();
    for (int64_t i = 0; i < c.numel(); ++i)
      if (is_nonzero(pc[i])) keep.push_back(i);
  });
  Shape out_shape = in_shape;
  out_shape[ax] = static_cast<int64_t>(keep.size());
  Tensor out = Tensor::empty(out_shape, x.dtype());
  if (out.numel() == 0) return out;
  // (outer, n, inner) -> (outer, kept, inner): each kept slice of each outer block is one memcpy.
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < ax; ++d) outer *= in_shape[d];
  for (int64_t d = ax + 1; d < static_cast<int64_t>(in_shape.size()); ++d) inner *= in_shape[d];
  const int64_t kept = static_cast<int64_t>(keep.size());
  const size_t es = element_size(x.dtype());
  const char* px = static_cast<const char*>(src.raw_data());
  char* po = static_cast<char*>(out.raw_data());
  parallel_for(0, outer * kept, std::max<int64_t>(1, kGrain / inner), [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      int64_t o = t / kept, j = t % kept;
      std::memcpy(po + t * inner * es, px + (o * n + keep[j]) * inner * es, inner * es);
    }
  });
  return out;
}

// ---------------------------------------------------------------- depth_to_space, space_to_depth

Tensor depth_to_space(const Tensor& x, int64_t blocksize, bool crd) {
  KILN_CHECK(x.defined() && x.dim() == 4, "depth_to_space: input must be (N, C, H, W), got ",
             x.defined() ? shape_str(x.shape()) : "undefined");
  const int64_t b = blocksize, N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  KILN_CHECK(b >= 1 && C % (b * b) == 0, "depth_to_space: channels ", C, " of input ", shape_str(x.shape()),
             " must be a multiple of blocksize^2 (blocksize ", b, ")");
  const int64_t c = C / (b * b);
  Shape out_shape{N, c, H * b, W * b};
  // Output (N, c, H, b_row, W, b_col) reads the channel as (b_row, b_col, c) in DCR mode and as
  // (c, b_row, b_col) in CRD mode.
  if (crd) return permuted_copy(x, {N, c, b, b, H, W}, {0, 1, 4, 2, 5, 3}, out_shape);
  return permuted_copy(x, {N, b, b, c, H, W}, {0, 3, 4, 1, 5, 2}, out_shape);
}

Tensor space_to_depth(const Tensor& x, int64_t blocksize) {
  KILN_CHECK(x.defined() && x.dim() == 4, "space_to_depth: input must be (N, C, H, W), got ",
             x.defined() ? shape_str(x.shape()) : "undefined");
  const int64_t b = blocksize, N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  KILN_CHECK(b >= 1 && H % b == 0 && W % b == 0, "space_to_depth: height and width of input ", shape_str(x.shape()),
             " must be multiples of blocksize ", b);
  // (N, C, H/b, b_row, W/b, b_col) -> (N, b_row, b_col, C, H/b, W/b).
  return permuted_copy(x, {N, C, H / b, b, W / b, b}, {0, 3, 5, 1, 2, 4}, {N, C * b * b, H / b, W / b});
}

// ---------------------------------------------------------------- reverse_sequence

Tensor reverse_sequence(const Tensor& x, const Tensor& sequence_lens, int64_t batch_axis, int64_t time_axis) {
  KILN_CHECK(x.defined() && x.dim() >= 2, "reverse_sequence: input must have rank >= 2, got ",
             x.defined() ? shape_str(x.shape()) : "undefined");
  KILN_CHECK((batch_axis == 0 || batch_axis == 1) && (time_axis == 0 || time_axis == 1) && batch_axis != time_axis,
             "reverse_sequence: batch_axis and time_axis must be 0 and 1 in some order, got ", batch_axis, " and ",
             time_axis);
  KILN_CHECK(sequence_lens.defined(), "reverse_sequence: sequence_lens is undefined");
  KILN_CHECK_TYPE(sequence_lens.dtype() == DType::i64 || sequence_lens.dtype() == DType::i32,
                  "reverse_sequence: sequence_lens must be i64 or i32, got ", dtype_name(sequence_lens.dtype()));
  const int64_t B = x.shape()[batch_axis], T = x.shape()[time_axis];
  KILN_CHECK(sequence_lens.dim() == 1 && sequence_lens.numel() == B, "reverse_sequence: sequence_lens must be (",
             B, ") for input ", shape_str(x.shape()), " with batch_axis ", batch_axis, ", got ",
             shape_str(sequence_lens.shape()));
  std::vector<int64_t> lens = sequence_lens.to_vector<int64_t>();
  for (int64_t len : lens)
    KILN_CHECK(len >= 0 && len <= T, "reverse_sequence: sequence length ", len, " is outside [0, ", T,
               "] for input ", shape_str(x.shape()), " with time_axis ", time_axis);
  Tensor xc = contiguous_raw(x);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  if (out.numel() == 0) return out;
  const int64_t inner = x.numel() / (x.shape()[0] * x.shape()[1]);
  const int64_t b_stride = xc.strides()[batch_axis], t_stride = xc.strides()[time_axis];
  const size_t es = element_size(x.dtype());
  const char* px = static_cast<const char*>(xc.raw_data());
  char* po = static_cast<char*>(out.raw_data());
  parallel_for(0, B * T, std::max<int64_t>(1, kGrain / inner), [&](int64_t lo, int64_t hi) {
    for (int64_t task = lo; task < hi; ++task) {
      int64_t bi = task / T, t = task % T, len = lens[bi];
      int64_t from = t < len ? len - 1 - t : t;
      std::memcpy(po + (bi * b_stride + t * t_stride) * es, px + (bi * b_stride + from * t_stride) * es, inner * es);
    }
  });
  return out;
}

// ---------------------------------------------------------------- nonzero

Tensor nonzero(const Tensor& x) {
  KILN_CHECK(x.defined(), "nonzero: input is undefined");
  Tensor xc = contiguous_raw(x);
  const int64_t rank = std::max<int64_t>(x.dim(), 1);
  const Shape shape = x.dim() == 0 ? Shape{1} : x.shape();
  std::vector<int64_t> hits;  // flat positions of the nonzero elements
  dispatch_all(x.dtype(), [&]<typename T>() {
    const T* p = xc.data<T>();
    for (int64_t i = 0; i < xc.numel(); ++i)
      if (is_nonzero(p[i])) hits.push_back(i);
  });
  const int64_t n = static_cast<int64_t>(hits.size());
  Tensor out = Tensor::empty({rank, n}, DType::i64);
  int64_t* po = out.data<int64_t>();
  for (int64_t j = 0; j < n; ++j) {
    int64_t rem = hits[j];
    for (int64_t d = rank - 1; d >= 0; --d) {
      po[d * n + j] = rem % shape[d];
      rem /= shape[d];
    }
  }
  return out;
}

}  // namespace kiln::ops
