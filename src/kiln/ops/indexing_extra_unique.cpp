// unique (ONNX Unique): the distinct elements of flattened x, or the distinct slices along an
// axis, with first-occurrence indices, inverse indices and counts. Slices are rows of a (n, L)
// matrix (the axis moved to the front); a stable sort of the rows groups equal ones with their
// first occurrence leading each group, as NumPy's unique does.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>

#include "kiln/ops/indexing_extra.h"

namespace kiln::ops {

namespace {

// A totally ordered key per element: 16-bit floats compare as float, NaN sorts after every number
// and equals every NaN (std::sort needs a strict weak order; NumPy also puts NaN last).
template <typename T>
inline auto sort_key(T v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) return static_cast<float>(to_double(v));
  else return v;
}

template <typename K>
inline int compare_keys(K a, K b) {
  if constexpr (std::is_floating_point_v<K>) {
    bool na = std::isnan(a), nb = std::isnan(b);
    if (na || nb) return na == nb ? 0 : (na ? 1 : -1);
  }
  return a < b ? -1 : (b < a ? 1 : 0);
}

}  // namespace

UniqueResult unique(const Tensor& x, std::optional<int64_t> axis, bool sorted) {
  KILN_CHECK(x.defined(), "unique: input is undefined");
  // Rows: (n, L) with the axis in front; without an axis every element is a row of one.
  int64_t ax = 0;
  Tensor rows;
  Shape front_shape;  // x's shape with the axis moved to the front
  if (axis) {
    KILN_CHECK(x.dim() >= 1, "unique: an axis needs an input of rank >= 1, got a scalar");
    ax = wrap_dim(*axis, x.dim(), "unique");
    std::vector<int64_t> perm{ax};
    for (int64_t d = 0; d < x.dim(); ++d)
      if (d != ax) perm.push_back(d);
    Shape ps;
    Strides pst;
    for (int64_t p : perm) {
      ps.push_back(x.shape()[p]);
      pst.push_back(x.strides()[p]);
    }
    front_shape = ps;
    rows = clone_raw(x.as_strided(ps, pst, x.offset()));
  } else {
    rows = contiguous_raw(x);
    front_shape = {x.numel()};
  }
  const int64_t n = front_shape[0];
  const int64_t L = n == 0 ? 0 : rows.numel() / n;

  // order: the rows stably sorted; group_of[i]: the group (distinct value, in sorted order) of row i.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::vector<int64_t> group_of(static_cast<size_t>(n));
  std::vector<int64_t> first, count;  // per group: first occurrence, size
  dispatch_all(x.dtype(), [&]<typename T>() {
    const T* p = rows.data<T>();
    auto cmp = [&](int64_t a, int64_t b) {
      const T* ra = p + a * L;
      const T* rb = p + b * L;
      for (int64_t j = 0; j < L; ++j)
        if (int c = compare_keys(sort_key(ra[j]), sort_key(rb[j])); c != 0) return c;
      return 0;
    };
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return cmp(a, b) < 0; });
    for (int64_t i = 0; i < n; ++i) {
      int64_t r = order[i];
      if (i == 0 || cmp(order[i - 1], r) != 0) {
        first.push_back(r);  // the stable sort puts the first occurrence first in its group
        count.push_back(0);
      }
      group_of[r] = static_cast<int64_t>(first.size()) - 1;
      ++count.back();
    }
  });
  const int64_t U = static_cast<int64_t>(first.size());

  // rank[g]: the output position of group g (sorted: g itself; else by first occurrence).
  std::vector<int64_t> by_output(static_cast<size_t>(U));
  std::iota(by_output.begin(), by_output.end(), 0);
  if (!sorted) std::sort(by_output.begin(), by_output.end(), [&](int64_t a, int64_t b) { return first[a] < first[b]; });
  std::vector<int64_t> rank(static_cast<size_t>(U));
  for (int64_t j = 0; j < U; ++j) rank[by_output[j]] = j;

  UniqueResult res;
  res.indices = Tensor::empty({U}, DType::i64);
  res.counts = Tensor::empty({U}, DType::i64);
  res.inverse_indices = Tensor::empty({n}, DType::i64);
  for (int64_t j = 0; j < U; ++j) {
    res.indices.data<int64_t>()[j] = first[by_output[j]];
    res.counts.data<int64_t>()[j] = count[by_output[j]];
  }
  for (int64_t i = 0; i < n; ++i) res.inverse_indices.data<int64_t>()[i] = rank[group_of[i]];

  // Values: the first row of each group, in output order, then the axis moved back in place.
  Shape uniq_front = front_shape;
  uniq_front[0] = U;
  Tensor front = Tensor::empty(uniq_front, x.dtype());
  dispatch_all(x.dtype(), [&]<typename T>() {
    const T* p = rows.data<T>();
    T* q = front.data<T>();
    for (int64_t j = 0; j < U; ++j) std::copy(p + first[by_output[j]] * L, p + (first[by_output[j]] + 1) * L, q + j * L);
  });
  if (!axis) {
    res.values = front;
    return res;
  }
  Shape out_shape = x.shape();
  out_shape[ax] = U;
  res.values = Tensor::empty(out_shape, x.dtype());
  if (res.values.numel() > 0) {
    // out viewed with the axis in front has front's shape.
    Strides os = contiguous_strides(out_shape), fs{os[ax]};
    for (int64_t d = 0; d < x.dim(); ++d)
      if (d != ax) fs.push_back(os[d]);
    copy_into(res.values.as_strided(uniq_front, fs, 0), front);
  }
  return res;
}

}  // namespace kiln::ops
