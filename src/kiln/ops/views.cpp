// The view ops: new shapes and strides over the same storage, no data copied. Their backward
// maps the gradient back through the inverse view (or a reshape for reshape).
#include <algorithm>
#include <numeric>

#include "kiln/ops/autograd_record.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/reduce.h"
#include "kiln/ops/shape_ops.h"
#include "kiln/ops/trace.h"

namespace kiln::ops {

namespace {

Shape infer_shape(const Shape& requested, int64_t n, const Shape& from) {
  Shape s = requested;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      KILN_CHECK(infer < 0, "reshape: only one dimension can be -1, got ", shape_str(requested));
      infer = static_cast<int64_t>(i);
    } else {
      KILN_CHECK(s[i] >= 0, "reshape: invalid dimension ", s[i], " in ", shape_str(requested));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    KILN_CHECK(known != 0 && n % known == 0, "reshape: cannot reshape ", shape_str(from), " (", n,
               " elements) into ", shape_str(requested));
    s[infer] = n / known;
  }
  KILN_CHECK(numel(s) == n, "reshape: cannot reshape ", shape_str(from), " (", n, " elements) into ",
             shape_str(requested), " (", numel(s), " elements)");
  return s;
}

// Strides that let `shape` view the data of (old_shape, old_strides) in row-major order, or
// an empty optional when the layout cannot be expressed without a copy. The old dims are
// grouped into contiguous chunks; each new dim must fall inside one chunk.
std::optional<Strides> view_strides(const Shape& old_shape, const Strides& old_strides, const Shape& shape) {
  Strides out(shape.size());
  if (numel(old_shape) == 0) return contiguous_strides(shape);
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.empty() ? 1 : old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) {
    for (; view_d >= 0; --view_d) {
      if (shape[view_d] != 1) return std::nullopt;
      out[view_d] = 1;
    }
  }
  return out;
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& requested) {
  TracedOp trace_;
  Shape shape = infer_shape(requested, x.numel(), x.shape());
  if (shape == x.shape()) return traced(trace_, "reshape", {x}, x, {{"shape", requested}});
  Tensor out;
  if (auto st = view_strides(x.shape(), x.strides(), shape))
    out = x.as_strided(shape, *st, x.offset());
  else
    out = contiguous_raw(x).as_strided(shape, contiguous_strides(shape), 0).detach();
  Shape in_shape = x.shape();
  return traced(trace_, "reshape", {x},
                           record("reshape", {x}, out,
                                  [in_shape](const Tensor& g, const std::vector<bool>&) {
                                    return std::vector<Tensor>{reshape(g, in_shape)};
                                  }),
                           {{"shape", requested}});
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  TracedOp trace_;
  if (x.dim() == 0)
    return traced(trace_, "flatten", {x}, reshape(x, {1}), {{"start_dim", start_dim}, {"end_dim", end_dim}});
  int64_t s = wrap_dim(start_dim, x.dim(), "flatten"), e = wrap_dim(end_dim, x.dim(), "flatten");
  KILN_CHECK(s <= e, "flatten: start_dim ", start_dim, " is after end_dim ", end_dim);
  Shape shape(x.shape().begin(), x.shape().begin() + s);
  int64_t n = 1;
  for (int64_t d = s; d <= e; ++d) n *= x.shape()[d];
  shape.push_back(n);
  shape.insert(shape.end(), x.shape().begin() + e + 1, x.shape().end());
  return traced(trace_, "flatten", {x}, reshape(x, shape), {{"start_dim", start_dim}, {"end_dim", end_dim}});
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  TracedOp trace_;
  int64_t d = wrap_dim(dim, x.dim(), "squeeze");
  if (x.dim() == 0 || x.shape()[d] != 1)
    return traced(trace_, "squeeze", {x}, x, {{"axes", std::vector<int64_t>{dim}}});
  Shape s = x.shape();
  s.erase(s.begin() + d);
  return traced(trace_, "squeeze", {x}, reshape(x, s), {{"axes", std::vector<int64_t>{dim}}});
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  TracedOp trace_;
  int64_t d = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape s = x.shape();
  s.insert(s.begin() + d, 1);
  return traced(trace_, "unsqueeze", {x}, reshape(x, s), {{"axes", std::vector<int64_t>{dim}}});
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  TracedOp trace_;
  KILN_CHECK(static_cast<int64_t>(dims.size()) == x.dim(), "permute: got ", dims.size(),
             " dims for a tensor with ", x.dim(), " dims");
  Shape shape(dims.size());
  Strides strides(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], x.dim(), "permute");
    KILN_CHECK(inverse[d] < 0, "permute: dimension ", d, " repeated");
    inverse[d] = static_cast<int64_t>(i);
    shape[i] = x.shape()[d];
    strides[i] = x.strides()[d];
  }
  Tensor out = x.as_strided(shape, strides, x.offset());
  return traced(
      trace_, "permute", {x},
      record("permute", {x}, out,
             [inverse](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{permute(g, inverse)}; }),
      {{"perm", dims}});
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  TracedOp trace_;
  std::vector<int64_t> dims(x.dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[wrap_dim(dim0, x.dim(), "transpose")], dims[wrap_dim(dim1, x.dim(), "transpose")]);
  return traced(trace_, "transpose", {x}, permute(x, dims), {{"dim0", dim0}, {"dim1", dim1}});
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  TracedOp trace_;
  int64_t d = wrap_dim(dim, x.dim(), "slice");
  KILN_CHECK(step > 0, "slice: step must be positive, got ", step);
  int64_t size = x.shape()[d];
  auto clampi = [size](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + size : v, 0, size); };
  int64_t s = clampi(start), e = std::max(clampi(end), s);
  Shape shape = x.shape();
  Strides strides = x.strides();
  shape[d] = (e - s + step - 1) / step;
  strides[d] *= step;
  Tensor out = x.as_strided(shape, strides, x.offset() + s * x.strides()[d]);
  Shape in_shape = x.shape();
  return traced(trace_, "slice", {x},
                           record("slice", {x}, out,
                                  [in_shape, d, s, step](const Tensor& g, const std::vector<bool>&) {
                                    Tensor gi = Tensor::zeros(in_shape, g.dtype());
                                    Tensor window = gi.as_strided(
                                        g.shape(),
                                        [&] {
                                          Strides st = gi.strides();
                                          st[d] *= step;
                                          return st;
                                        }(),
                                        s * gi.strides()[d]);
                                    copy_into(window, g);
                                    return std::vector<Tensor>{gi};
                                  }),
                           {{"dim", dim}, {"start", start}, {"end", end}, {"step", step}});
}

Tensor expand(const Tensor& x, const Shape& requested) {
  KILN_CHECK(requested.size() >= x.shape().size(), "expand: cannot expand ", shape_str(x.shape()), " to ",
             shape_str(requested), " (fewer dims)");
  size_t lead = requested.size() - x.shape().size();
  Shape shape(requested.size());
  Strides strides(requested.size(), 0);
  for (size_t i = 0; i < requested.size(); ++i) {
    if (i < lead) {
      KILN_CHECK(requested[i] >= 0, "expand: -1 is not allowed for new leading dims in ", shape_str(requested));
      shape[i] = requested[i];
      continue;
    }
    int64_t have = x.shape()[i - lead];
    int64_t want = requested[i] == -1 ? have : requested[i];
    KILN_CHECK(have == want || have == 1, "expand: cannot expand ", shape_str(x.shape()), " to ",
               shape_str(requested), " (dimension ", i, ": ", have, " vs ", want, ")");
    shape[i] = want;
    strides[i] = have == want ? x.strides()[i - lead] : 0;
  }
  Tensor out = x.as_strided(shape, strides, x.offset());
  Shape in_shape = x.shape();
  return record("expand", {x}, out, [in_shape](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{reduce_to_shape(g, in_shape)};
  });
}

}  // namespace kiln::ops
