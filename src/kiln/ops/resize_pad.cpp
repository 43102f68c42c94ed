// resize (ONNX Resize: nearest, N-linear, N-cubic) and pad_mode (ONNX Pad: constant, reflect,
// edge), forward only. Both reduce to per-axis index tables: output coordinate -> input
// coordinate on each axis. Nearest resize and padding are then one gather over those tables (any
// dtype, any strides); linear and cubic resize are one 1-D interpolation pass per axis that
// changes (the kernels are separable, so the passes compose to N-linear / N-cubic).
#include <algorithm>
#include <array>
#include <cmath>
#include <utility>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/inference_nn.h"

namespace kiln::ops {

namespace {

using AxisMap = std::vector<int64_t>;  // per output coordinate: the input coordinate, or -1 (fill)

// out[o0, ..., o_{r-1}] = x[maps[0][o0], ..., maps[r-1][o_{r-1}]], or `fill` where any map is -1.
// x may have any strides; out is contiguous with shape out_shape.
template <typename T>
void gather_axis_maps(const Tensor& x, const std::vector<AxisMap>& maps, T fill, const Tensor& out) {
  const Shape& os = out.shape();
  const int64_t r = static_cast<int64_t>(os.size());
  const T* src = x.data<T>();
  T* dst = out.data<T>();
  if (r == 0) {
    dst[0] = src[0];
    return;
  }
  // Element offsets into x per axis (-1 kept), so the inner loop is one load per element.
  std::vector<std::vector<int64_t>> offs(static_cast<size_t>(r));
  for (int64_t d = 0; d < r; ++d) {
    offs[d].resize(maps[d].size());
    for (size_t o = 0; o < maps[d].size(); ++o) offs[d][o] = maps[d][o] < 0 ? -1 : maps[d][o] * x.stride(d);
  }
  const int64_t inner = os[r - 1];
  if (out.numel() == 0) return;
  const int64_t rows = out.numel() / inner;
  parallel_for(0, rows, std::max<int64_t>(1, (1 << 15) / inner), [&](int64_t lo, int64_t hi) {
    std::vector<int64_t> idx(static_cast<size_t>(r - 1));
    for (int64_t d = r - 2, t = lo; d >= 0; --d) {
      idx[d] = t % os[d];
      t /= os[d];
    }
    const int64_t* last = offs[r - 1].data();
    for (int64_t row = lo; row < hi; ++row) {
      int64_t base = 0;
      bool filled = false;
      for (int64_t d = 0; d < r - 1; ++d) {
        const int64_t o = offs[d][idx[d]];
        if (o < 0) filled = true;
        base += o;
      }
      T* out_row = dst + row * inner;
      if (filled) {
        std::fill(out_row, out_row + inner, fill);
      } else {
        for (int64_t i = 0; i < inner; ++i) out_row[i] = last[i] < 0 ? fill : src[base + last[i]];
      }
      for (int64_t d = r - 2; d >= 0; --d) {
        if (++idx[d] < os[d]) break;
        idx[d] = 0;
      }
    }
  });
}

// ---------------------------------------------------------------- resize

// Input coordinate of output coordinate o on one axis (ONNX coordinate_transformation_mode).
// `scale` is the given scale, or out/in when sizes were given. align_corners divides by len - 1,
// len = scale * in with scales (a fractional length, as in ONNX's reference implementation and
// backend tests) and = out with sizes. tf_crop_and_resize spreads the outputs over the axis's
// roi [start, end] (normalised: 0 the first element, 1 the last).
double source_coord(ResizeCoord coord, int64_t o, double scale, double len, int64_t in, int64_t out, double start,
                    double end) {
  const double x = static_cast<double>(o), last = static_cast<double>(in - 1);
  switch (coord) {
    case ResizeCoord::tf_crop_and_resize:
      return out > 1 ? start * last + x * (end - start) * last / static_cast<double>(out - 1) : 0.5 * (start + end) * last;
    case ResizeCoord::half_pixel: return (x + 0.5) / scale - 0.5;
    case ResizeCoord::pytorch_half_pixel: return out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
    case ResizeCoord::align_corners: return len == 1.0 ? 0.0 : x * static_cast<double>(in - 1) / (len - 1.0);
    case ResizeCoord::asymmetric: return x / scale;
    case ResizeCoord::tf_half_pixel_for_nn: return (x + 0.5) / scale;
  }
  return 0.0;
}

int64_t nearest_index(ResizeNearest mode, double x, int64_t in) {
  double r = 0.0;
  switch (mode) {
    case ResizeNearest::round_prefer_floor: r = std::ceil(x - 0.5); break;
    case ResizeNearest::round_prefer_ceil: r = std::floor(x + 0.5); break;
    case ResizeNearest::floor: r = std::floor(x); break;
    case ResizeNearest::ceil: r = std::ceil(x); break;
  }
  return std::clamp(static_cast<int64_t>(r), int64_t{0}, in - 1);
}

// The interpolation taps of one axis: output o = sum over t < n of w[o*n + t] * in[idx[o*n + t]].
// Linear has n = 2, cubic n = 4. Indices are clamped to the axis (edge padding, as ONNX's
// reference implementation), after exclude_outside has dropped and renormalised outside taps.
struct AxisTaps {
  int64_t n = 2;
  std::vector<int64_t> idx;
  std::vector<double> w;
};

// Keys' cubic convolution weights for the taps at offsets -1, 0, 1, 2 from floor(x), t = x - floor(x).
std::array<double, 4> cubic_weights(double t, double a) {
  auto w1 = [a](double d) { return ((a + 2) * d - (a + 3)) * d * d + 1; };         // |d| <= 1
  auto w2 = [a](double d) { return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a; };  // 1 < |d| < 2
  return {w2(t + 1), w1(t), w1(1 - t), w2(2 - t)};
}

// tf_crop_and_resize: an input coordinate outside the axis reads extrapolation_value.
bool extrapolated(const ResizeOptions& opt, double x, int64_t in) {
  return opt.coord == ResizeCoord::tf_crop_and_resize && (x < 0.0 || x > static_cast<double>(in - 1));
}

// The roi of dim d as (start, end); (0, 1) when the mode does not use it.
std::pair<double, double> roi_of(const ResizeOptions& opt, int64_t d, int64_t r) {
  if (opt.coord != ResizeCoord::tf_crop_and_resize) return {0.0, 1.0};
  return {opt.roi[d], opt.roi[r + d]};
}

// `outside` (out entries) is set where the coordinate is extrapolated.
AxisTaps interpolation_taps(const ResizeOptions& opt, double scale, double len, int64_t in, int64_t out,
                            std::pair<double, double> roi, std::vector<bool>& outside) {
  AxisTaps taps;
  taps.n = opt.mode == ResizeMode::cubic ? 4 : 2;
  taps.idx.resize(static_cast<size_t>(out * taps.n));
  taps.w.resize(taps.idx.size());
  for (int64_t o = 0; o < out; ++o) {
    const double x = source_coord(opt.coord, o, scale, len, in, out, roi.first, roi.second);
    outside[o] = extrapolated(opt, x, in);
    const double f = std::floor(x), t = x - f;
    const int64_t i = static_cast<int64_t>(f);
    int64_t* idx = taps.idx.data() + o * taps.n;
    double* w = taps.w.data() + o * taps.n;
    if (taps.n == 2) {
      idx[0] = i, idx[1] = i + 1, w[0] = 1 - t, w[1] = t;
    } else {
      const std::array<double, 4> c = cubic_weights(t, opt.cubic_coeff_a);
      for (int k = 0; k < 4; ++k) idx[k] = i - 1 + k, w[k] = c[k];
    }
    if (opt.exclude_outside) {
      double sum = 0;
      for (int64_t k = 0; k < taps.n; ++k) {
        if (idx[k] < 0 || idx[k] >= in) w[k] = 0;
        sum += w[k];
      }
      if (sum != 0)
        for (int64_t k = 0; k < taps.n; ++k) w[k] /= sum;
    }
    for (int64_t k = 0; k < taps.n; ++k) idx[k] = std::clamp<int64_t>(idx[k], 0, in - 1);
  }
  return taps;
}

// True when every output takes exactly its own input element (an axis the resize leaves alone).
bool is_identity(const AxisTaps& taps, int64_t in) {
  if (static_cast<int64_t>(taps.idx.size()) != in * taps.n) return false;
  for (int64_t o = 0; o < in; ++o) {
    double own = 0;
    for (int64_t k = 0; k < taps.n; ++k) {
      const double w = taps.w[o * taps.n + k];
      if (taps.idx[o * taps.n + k] == o) own += w;
      else if (w != 0.0) return false;
    }
    if (own != 1.0) return false;
  }
  return true;
}

// x contiguous viewed as (outer, in, inner) -> (outer, out, inner) along one axis.
template <typename T>
Tensor interpolation_pass(const Tensor& x, int64_t axis, const AxisTaps& taps) {
  Shape shape = x.shape();
  const int64_t in = shape[axis], n = taps.n, out = static_cast<int64_t>(taps.idx.size()) / n;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= shape[d];
  for (size_t d = static_cast<size_t>(axis) + 1; d < shape.size(); ++d) inner *= shape[d];
  shape[axis] = out;
  Tensor y = Tensor::empty(shape, x.dtype());
  const T* src = x.data<T>();
  T* dst = y.data<T>();
  if (inner == 1) {  // the last axis: one dot product of n taps per output element
    parallel_for(0, outer, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, out * n)), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        const T* s = src + b * in;
        T* d = dst + b * out;
        for (int64_t o = 0; o < out; ++o) {
          double acc = 0;
          for (int64_t k = 0; k < n; ++k) acc += taps.w[o * n + k] * static_cast<double>(s[taps.idx[o * n + k]]);
          d[o] = static_cast<T>(acc);
        }
      }
    });
    return y;
  }
  parallel_for(0, outer * out, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, inner * n)),
               [&](int64_t lo, int64_t hi) {
                 std::vector<double> acc(static_cast<size_t>(inner));
                 for (int64_t row = lo; row < hi; ++row) {
                   const int64_t b = row / out, o = row % out;
                   std::fill(acc.begin(), acc.end(), 0.0);
                   for (int64_t k = 0; k < n; ++k) {
                     const double w = taps.w[o * n + k];
                     if (w == 0.0) continue;
                     const T* s = src + (b * in + taps.idx[o * n + k]) * inner;
                     for (int64_t i = 0; i < inner; ++i) acc[i] += w * static_cast<double>(s[i]);
                   }
                   T* d = dst + row * inner;
                   for (int64_t i = 0; i < inner; ++i) d[i] = static_cast<T>(acc[i]);
                 }
               });
  return y;
}

}  // namespace

ResizeMode resize_mode_from_name(std::string_view name) {
  if (name == "nearest") return ResizeMode::nearest;
  if (name == "linear") return ResizeMode::linear;
  if (name == "cubic") return ResizeMode::cubic;
  throw ValueError(detail::concat("resize: unknown mode \"", name, "\" (expected nearest, linear or cubic)"));
}

ResizeCoord resize_coord_from_name(std::string_view name) {
  if (name == "half_pixel") return ResizeCoord::half_pixel;
  if (name == "pytorch_half_pixel") return ResizeCoord::pytorch_half_pixel;
  if (name == "align_corners") return ResizeCoord::align_corners;
  if (name == "asymmetric") return ResizeCoord::asymmetric;
  if (name == "tf_half_pixel_for_nn") return ResizeCoord::tf_half_pixel_for_nn;
  if (name == "tf_crop_and_resize") return ResizeCoord::tf_crop_and_resize;
  throw ValueError(detail::concat("resize: unknown coordinate_transformation_mode \"", name,
                                  "\" (expected half_pixel, pytorch_half_pixel, align_corners, asymmetric, "
                                  "tf_half_pixel_for_nn or tf_crop_and_resize)"));
}

ResizeNearest resize_nearest_from_name(std::string_view name) {
  if (name == "round_prefer_floor") return ResizeNearest::round_prefer_floor;
  if (name == "round_prefer_ceil") return ResizeNearest::round_prefer_ceil;
  if (name == "floor") return ResizeNearest::floor;
  if (name == "ceil") return ResizeNearest::ceil;
  throw ValueError(detail::concat("resize: unknown nearest_mode \"", name,
                                  "\" (expected round_prefer_floor, round_prefer_ceil, floor or ceil)"));
}

Tensor resize(const Tensor& x, const std::vector<double>& scales, const std::vector<int64_t>& sizes,
              const ResizeOptions& opt) {
  const int64_t r = x.dim();
  KILN_CHECK(scales.empty() != sizes.empty(), "resize: give exactly one of scales and sizes, got ", scales.size(),
             " scales and ", sizes.size(), " sizes for input ", shape_str(x.shape()));
  const size_t given = scales.empty() ? sizes.size() : scales.size();
  KILN_CHECK(static_cast<int64_t>(given) == r, "resize: ", scales.empty() ? "sizes" : "scales", " has ", given,
             " entries, but input ", shape_str(x.shape()), " has rank ", r);
  const bool crop = opt.coord == ResizeCoord::tf_crop_and_resize;
  KILN_CHECK(!crop || static_cast<int64_t>(opt.roi.size()) == 2 * r, "resize: tf_crop_and_resize needs a roi of ",
             2 * r, " values (starts, then ends) for input ", shape_str(x.shape()), ", got ", opt.roi.size());
  std::vector<double> scale(static_cast<size_t>(r)), len(static_cast<size_t>(r));
  Shape out_shape(static_cast<size_t>(r));
  for (int64_t d = 0; d < r; ++d) {
    const int64_t in = x.shape()[d];
    if (!scales.empty()) {
      KILN_CHECK(scales[d] > 0.0 && std::isfinite(scales[d]), "resize: scales must be positive, got ", scales[d],
                 " for dim ", d);
      scale[d] = scales[d];
      // With a crop the output covers the roi: in * (end - start) * scale elements.
      len[d] = static_cast<double>(in) * scales[d] * (crop ? opt.roi[r + d] - opt.roi[d] : 1.0);
      out_shape[d] = static_cast<int64_t>(std::floor(len[d]));
    } else {
      KILN_CHECK(sizes[d] >= 0, "resize: sizes must be >= 0, got ", sizes[d], " for dim ", d);
      out_shape[d] = sizes[d];
      len[d] = static_cast<double>(sizes[d]);
      scale[d] = in > 0 ? static_cast<double>(sizes[d]) / static_cast<double>(in) : 1.0;
    }
    KILN_CHECK(in > 0 || out_shape[d] == 0, "resize: cannot resize the empty dim ", d, " of ",
               shape_str(x.shape()), " to ", out_shape[d]);
  }
  Tensor out;
  if (opt.mode == ResizeMode::nearest) {
    std::vector<AxisMap> maps(static_cast<size_t>(r));
    for (int64_t d = 0; d < r; ++d) {
      const auto [start, end] = roi_of(opt, d, r);
      maps[d].resize(static_cast<size_t>(out_shape[d]));
      for (int64_t o = 0; o < out_shape[d]; ++o) {
        const double c = source_coord(opt.coord, o, scale[d], len[d], x.shape()[d], out_shape[d], start, end);
        maps[d][o] = extrapolated(opt, c, x.shape()[d]) ? -1 : nearest_index(opt.nearest, c, x.shape()[d]);
      }
    }
    out = Tensor::empty(out_shape, x.dtype());
    dispatch_all(x.dtype(),
                 [&]<typename T>() { gather_axis_maps<T>(x, maps, from_double<T>(opt.extrapolation_value), out); });
    return out;
  }
  KILN_CHECK_TYPE(x.dtype() == DType::f32 || x.dtype() == DType::f64,
                  "resize: linear and cubic modes need f32 or f64 input, got ", dtype_name(x.dtype()));
  if (numel(out_shape) == 0) return Tensor::empty(out_shape, x.dtype());
  out = contiguous_raw(x);
  bool copied = !out.same(x), any_outside = false;
  std::vector<std::vector<bool>> outside(static_cast<size_t>(r));
  for (int64_t d = 0; d < r; ++d) {
    outside[d].assign(static_cast<size_t>(out_shape[d]), false);
    const AxisTaps taps = interpolation_taps(opt, scale[d], len[d], x.shape()[d], out_shape[d], roi_of(opt, d, r),
                                             outside[d]);
    any_outside = any_outside || std::find(outside[d].begin(), outside[d].end(), true) != outside[d].end();
    if (is_identity(taps, x.shape()[d])) continue;
    out = dispatch_float(x.dtype(), "resize", [&]<typename T>() { return interpolation_pass<T>(out, d, taps); });
    copied = true;
  }
  if (!copied) out = clone_raw(out);  // never alias the input
  if (any_outside) {  // tf_crop_and_resize: elements with an extrapolated coordinate on any axis
    dispatch_float(x.dtype(), "resize", [&]<typename T>() {
      T* p = out.data<T>();
      std::vector<int64_t> idx(static_cast<size_t>(r), 0);
      for (int64_t i = 0; i < out.numel(); ++i) {
        bool fill = false;
        for (int64_t d = 0; d < r; ++d) fill = fill || outside[d][idx[d]];
        if (fill) p[i] = from_double<T>(opt.extrapolation_value);
        for (int64_t d = r - 1; d >= 0; --d) {
          if (++idx[d] < out_shape[d]) break;
          idx[d] = 0;
        }
      }
    });
  }
  return out;
}

// ---------------------------------------------------------------- pad

PadMode pad_mode_from_name(std::string_view name) {
  if (name == "constant") return PadMode::constant;
  if (name == "reflect") return PadMode::reflect;
  if (name == "edge") return PadMode::edge;
  if (name == "wrap") throw NotImplementedError("pad: mode \"wrap\" is not implemented (constant, reflect, edge are)");
  throw ValueError(detail::concat("pad: unknown mode \"", name, "\" (expected constant, reflect or edge)"));
}

Tensor pad_mode(const Tensor& x, const std::vector<int64_t>& pads, double constant_value, PadMode mode) {
  const int64_t r = x.dim();
  KILN_CHECK(static_cast<int64_t>(pads.size()) == 2 * r, "pad_mode: pads has ", pads.size(),
             " entries, but input ", shape_str(x.shape()), " needs 2 * rank = ", 2 * r);
  Shape out_shape(static_cast<size_t>(r));
  std::vector<AxisMap> maps(static_cast<size_t>(r));
  for (int64_t d = 0; d < r; ++d) {
    const int64_t n = x.shape()[d], begin = pads[d], end = pads[d + r], m = n + begin + end;
    KILN_CHECK(m >= 0, "pad_mode: pads ", begin, " and ", end, " crop dim ", d, " of ", shape_str(x.shape()),
               " below zero");
    KILN_CHECK(mode == PadMode::constant || n > 0 || m == 0, "pad_mode: cannot ",
               mode == PadMode::reflect ? "reflect" : "edge", "-pad the empty dim ", d, " of ", shape_str(x.shape()));
    out_shape[d] = m;
    maps[d].resize(static_cast<size_t>(m));
    const int64_t period = 2 * (n - 1);
    for (int64_t o = 0; o < m; ++o) {
      int64_t i = o - begin;
      if (i < 0 || i >= n) {
        if (mode == PadMode::constant) {
          i = -1;
        } else if (mode == PadMode::edge || n == 1) {
          i = std::clamp<int64_t>(i, 0, n - 1);
        } else {  // reflect: indices fold with period 2(n-1), as numpy.pad
          i = ((i % period) + period) % period;
          if (i >= n) i = period - i;
        }
      }
      maps[d][o] = i;
    }
  }
  Tensor out = Tensor::empty(out_shape, x.dtype());
  if (out.numel() == 0) return out;
  dispatch_all(x.dtype(), [&]<typename T>() { gather_axis_maps<T>(x, maps, from_double<T>(constant_value), out); });
  return out;
}

}  // namespace kiln::ops
