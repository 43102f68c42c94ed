// grid_sample, roi_align, non_max_suppression and max_unpool (vision_ops.h). The sampling ops
// work on an f64 copy of the input and convert the result back; the coordinate rules follow
// PyTorch's grid_sampler (GridSample's test data comes from it) and onnxruntime's RoiAlign.
#include "kiln/ops/vision_ops.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <string>

#include "kiln/core/thread_pool.h"

namespace kiln::ops {

namespace {

void check_float(const Tensor& x, const char* op, const char* what) {
  KILN_CHECK(x.defined(), op, ": ", what, " is undefined");
  KILN_CHECK_TYPE(is_floating(x.dtype()), op, ": ", what, " must be a float tensor (f32, f64, f16, bf16), got ",
                  dtype_name(x.dtype()));
}

Tensor f64(const Tensor& t) { return contiguous_raw(to_dtype_raw(t, DType::f64)); }

// ---------------------------------------------------------------- grid_sample coordinates

// Grid coordinate in [-1, 1] -> pixel coordinate.
double unnormalize(double g, int64_t size, bool align_corners) {
  return align_corners ? (g + 1.0) / 2.0 * static_cast<double>(size - 1)
                       : ((g + 1.0) * static_cast<double>(size) - 1.0) / 2.0;
}

// Reflects c into [twice_low / 2, twice_high / 2] (PyTorch's reflect_coordinates).
double reflect(double c, int64_t twice_low, int64_t twice_high) {
  if (twice_low == twice_high) return 0.0;
  const double lo = static_cast<double>(twice_low) / 2.0, span = static_cast<double>(twice_high - twice_low) / 2.0;
  c = std::fabs(c - lo);
  const double extra = std::fmod(c, span);
  const int64_t flips = static_cast<int64_t>(std::floor(c / span));
  return flips % 2 == 0 ? extra + lo : span - extra + lo;
}

// The coordinate that padding maps c to (zeros: c itself; the caller bounds-checks).
double pad_coordinate(double c, int64_t size, GridSamplePadding padding, bool align_corners) {
  if (padding == GridSamplePadding::zeros) return c;
  if (padding == GridSamplePadding::reflection)
    c = align_corners ? reflect(c, 0, 2 * (size - 1)) : reflect(c, -1, 2 * size - 1);
  return std::clamp(c, 0.0, static_cast<double>(size - 1));
}

// Cubic convolution weights (A = -0.75) of the taps floor(c) - 1 .. floor(c) + 2 at fraction t.
std::array<double, 4> cubic_weights(double t) {
  constexpr double A = -0.75;
  auto near = [](double x) { return ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0; };         // |x| <= 1
  auto far = [](double x) { return ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A; };  // 1 < |x| < 2
  return {far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)};
}

// One output point of one (n, c) plane `img` (H, W) at pixel coordinates (px, py).
double sample_point(const double* img, int64_t H, int64_t W, double px, double py, GridSampleMode mode,
                    GridSamplePadding padding, bool align_corners) {
  auto at = [&](int64_t y, int64_t x) { return (y >= 0 && y < H && x >= 0 && x < W) ? img[y * W + x] : 0.0; };
  if (mode == GridSampleMode::bicubic) {
    // Taps are padded one by one (the coordinate itself is not).
    const double fx = std::floor(px), fy = std::floor(py);
    const std::array<double, 4> wx = cubic_weights(px - fx), wy = cubic_weights(py - fy);
    double sum = 0.0;
    for (int64_t i = 0; i < 4; ++i) {
      double row = 0.0;
      const double ty = pad_coordinate(fy - 1.0 + static_cast<double>(i), H, padding, align_corners);
      for (int64_t j = 0; j < 4; ++j) {
        const double tx = pad_coordinate(fx - 1.0 + static_cast<double>(j), W, padding, align_corners);
        row += wx[j] * at(static_cast<int64_t>(ty), static_cast<int64_t>(tx));
      }
      sum += wy[i] * row;
    }
    return sum;
  }
  px = pad_coordinate(px, W, padding, align_corners);
  py = pad_coordinate(py, H, padding, align_corners);
  if (mode == GridSampleMode::nearest)
    return at(static_cast<int64_t>(std::nearbyint(py)), static_cast<int64_t>(std::nearbyint(px)));
  const double fx = std::floor(px), fy = std::floor(py), lx = px - fx, ly = py - fy;
  const auto x0 = static_cast<int64_t>(fx), y0 = static_cast<int64_t>(fy);
  return (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x0 + 1)) + ly * ((1 - lx) * at(y0 + 1, x0) + lx * at(y0 + 1, x0 + 1));
}

}  // namespace

GridSampleMode grid_sample_mode_from_name(std::string_view name) {
  if (name == "bilinear") return GridSampleMode::bilinear;
  if (name == "nearest") return GridSampleMode::nearest;
  if (name == "bicubic") return GridSampleMode::bicubic;
  throw ValueError(detail::concat("grid_sample: unknown mode '", name, "' (expected bilinear, nearest or bicubic)"));
}

GridSamplePadding grid_sample_padding_from_name(std::string_view name) {
  if (name == "zeros") return GridSamplePadding::zeros;
  if (name == "border") return GridSamplePadding::border;
  if (name == "reflection") return GridSamplePadding::reflection;
  throw ValueError(
      detail::concat("grid_sample: unknown padding_mode '", name, "' (expected zeros, border or reflection)"));
}

Tensor grid_sample(const Tensor& x, const Tensor& grid, GridSampleMode mode, GridSamplePadding padding,
                   bool align_corners) {
  const char* op = "grid_sample";
  check_float(x, op, "input");
  check_float(grid, op, "grid");
  KILN_CHECK(x.dim() == 4, op, ": input must be (N, C, H, W), got ", shape_str(x.shape()));
  KILN_CHECK(grid.dim() == 4 && grid.shape()[3] == 2 && grid.shape()[0] == x.shape()[0], op,
             ": grid must be (N, H_out, W_out, 2) with the input's N, got ", shape_str(grid.shape()), " for input ",
             shape_str(x.shape()));
  const int64_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  const int64_t Ho = grid.shape()[1], Wo = grid.shape()[2];
  KILN_CHECK((H > 0 && W > 0) || N * C * Ho * Wo == 0, op, ": input has an empty plane ", shape_str(x.shape()));
  Tensor xd = f64(x), gd = f64(grid);
  Tensor out = Tensor::empty({N, C, Ho, Wo}, DType::f64);
  const double *px = xd.data<double>(), *pg = gd.data<double>();
  double* po = out.data<double>();
  parallel_for(0, N * C, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, Ho * Wo)), [&](int64_t lo, int64_t hi) {
    for (int64_t nc = lo; nc < hi; ++nc) {
      const int64_t n = nc / C;
      const double* g = pg + n * Ho * Wo * 2;
      for (int64_t p = 0; p < Ho * Wo; ++p)
        po[nc * Ho * Wo + p] = sample_point(px + nc * H * W, H, W, unnormalize(g[2 * p], W, align_corners),
                                            unnormalize(g[2 * p + 1], H, align_corners), mode, padding, align_corners);
    }
  });
  return to_dtype_raw(out, x.dtype());
}

Tensor roi_align(const Tensor& x, const Tensor& rois, const Tensor& batch_indices, int64_t output_height,
                 int64_t output_width, int64_t sampling_ratio, double spatial_scale, bool max_mode, bool half_pixel) {
  const char* op = "roi_align";
  check_float(x, op, "input");
  check_float(rois, op, "rois");
  KILN_CHECK(x.dim() == 4, op, ": input must be (N, C, H, W), got ", shape_str(x.shape()));
  KILN_CHECK(rois.dim() == 2 && rois.shape()[1] == 4, op, ": rois must be (num_rois, 4), got ", shape_str(rois.shape()));
  KILN_CHECK(batch_indices.defined() && is_integral(batch_indices.dtype()) && batch_indices.dim() == 1 &&
                 batch_indices.numel() == rois.shape()[0],
             op, ": batch_indices must be integers of shape [", rois.shape()[0], "], got ",
             batch_indices.defined() ? dtype_name(batch_indices.dtype()) : "undefined",
             batch_indices.defined() ? shape_str(batch_indices.shape()) : "");
  KILN_CHECK(output_height >= 1 && output_width >= 1 && sampling_ratio >= 0, op,
             ": output_height and output_width must be >= 1 and sampling_ratio >= 0, got ", output_height, ", ",
             output_width, ", ", sampling_ratio);
  const int64_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3], R = rois.shape()[0];
  std::vector<int64_t> bidx = batch_indices.to_vector<int64_t>();
  for (int64_t r = 0; r < R; ++r)
    KILN_CHECK_INDEX(bidx[r] >= 0 && bidx[r] < N, op, ": batch index ", bidx[r], " of roi ", r,
                     " is out of range for batch size ", N);
  const std::vector<double> box = rois.to_vector<double>();
  Tensor xd = f64(x);
  Tensor out = Tensor::empty({R, C, output_height, output_width}, DType::f64);
  const double* px = xd.data<double>();
  double* po = out.data<double>();
  const double offset = half_pixel ? 0.5 : 0.0;
  parallel_for(0, R * C, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t rc = lo; rc < hi; ++rc) {
      const int64_t r = rc / C, c = rc % C;
      const double* img = px + (bidx[r] * C + c) * H * W;
      const double x0 = box[4 * r] * spatial_scale - offset, y0 = box[4 * r + 1] * spatial_scale - offset;
      double rw = box[4 * r + 2] * spatial_scale - offset - x0, rh = box[4 * r + 3] * spatial_scale - offset - y0;
      if (!half_pixel) rw = std::max(rw, 1.0), rh = std::max(rh, 1.0);
      const double bw = rw / static_cast<double>(output_width), bh = rh / static_cast<double>(output_height);
      const int64_t gh = sampling_ratio > 0 ? sampling_ratio : static_cast<int64_t>(std::ceil(rh / output_height));
      const int64_t gw = sampling_ratio > 0 ? sampling_ratio : static_cast<int64_t>(std::ceil(rw / output_width));
      const double count = static_cast<double>(std::max<int64_t>(gh * gw, 1));
      for (int64_t ph = 0; ph < output_height; ++ph)
        for (int64_t pw = 0; pw < output_width; ++pw) {
          double acc = max_mode ? -INFINITY : 0.0;
          bool any = false;
          for (int64_t iy = 0; iy < gh; ++iy)
            for (int64_t ix = 0; ix < gw; ++ix) {
              double y = y0 + ph * bh + (iy + 0.5) * bh / static_cast<double>(gh);
              double xx = x0 + pw * bw + (ix + 0.5) * bw / static_cast<double>(gw);
              double w[4] = {0, 0, 0, 0}, v[4] = {0, 0, 0, 0};
              if (!(y < -1.0 || y > H || xx < -1.0 || xx > W)) {  // else the sample contributes 0
                y = std::max(y, 0.0), xx = std::max(xx, 0.0);
                int64_t yl = static_cast<int64_t>(y), xl = static_cast<int64_t>(xx), yh = yl + 1, xh = xl + 1;
                if (yl >= H - 1) yl = yh = H - 1, y = static_cast<double>(yl);
                if (xl >= W - 1) xl = xh = W - 1, xx = static_cast<double>(xl);
                const double ly = y - yl, lx = xx - xl;
                w[0] = (1 - ly) * (1 - lx), w[1] = (1 - ly) * lx, w[2] = ly * (1 - lx), w[3] = ly * lx;
                v[0] = img[yl * W + xl], v[1] = img[yl * W + xh], v[2] = img[yh * W + xl], v[3] = img[yh * W + xh];
              }
              if (max_mode) {  // onnxruntime's max: the largest weighted tap
                for (int k = 0; k < 4; ++k) acc = std::max(acc, w[k] * v[k]);
              } else {
                acc += w[0] * v[0] + w[1] * v[1] + w[2] * v[2] + w[3] * v[3];
              }
              any = true;
            }
          po[((rc * output_height) + ph) * output_width + pw] = max_mode ? (any ? acc : 0.0) : acc / count;
        }
    }
  });
  return to_dtype_raw(out, x.dtype());
}

Tensor non_max_suppression(const Tensor& boxes, const Tensor& scores, int64_t max_output_boxes_per_class,
                           double iou_threshold, std::optional<double> score_threshold, bool center_point_box) {
  const char* op = "non_max_suppression";
  check_float(boxes, op, "boxes");
  check_float(scores, op, "scores");
  KILN_CHECK(boxes.dim() == 3 && boxes.shape()[2] == 4, op, ": boxes must be (batches, boxes, 4), got ",
             shape_str(boxes.shape()));
  KILN_CHECK(scores.dim() == 3 && scores.shape()[0] == boxes.shape()[0] && scores.shape()[2] == boxes.shape()[1], op,
             ": scores must be (batches, classes, boxes) matching boxes ", shape_str(boxes.shape()), ", got ",
             shape_str(scores.shape()));
  KILN_CHECK(iou_threshold >= 0.0 && iou_threshold <= 1.0, op, ": iou_threshold must be in [0, 1], got ", iou_threshold);
  const int64_t B = boxes.shape()[0], S = boxes.shape()[1], K = scores.shape()[1];
  const std::vector<double> bx = boxes.to_vector<double>(), sc = scores.to_vector<double>();
  // Corners (y1, x1, y2, x2) with y1 <= y2, x1 <= x2.
  std::vector<std::array<double, 4>> corner(static_cast<size_t>(B * S));
  for (int64_t i = 0; i < B * S; ++i) {
    const double* b = &bx[4 * i];
    if (center_point_box)
      corner[i] = {b[1] - b[3] / 2, b[0] - b[2] / 2, b[1] + b[3] / 2, b[0] + b[2] / 2};
    else
      corner[i] = {std::min(b[0], b[2]), std::min(b[1], b[3]), std::max(b[0], b[2]), std::max(b[1], b[3])};
  }
  auto iou = [&](const std::array<double, 4>& a, const std::array<double, 4>& b) {
    const double area_a = (a[2] - a[0]) * (a[3] - a[1]), area_b = (b[2] - b[0]) * (b[3] - b[1]);
    if (area_a <= 0 || area_b <= 0) return 0.0;
    const double ih = std::min(a[2], b[2]) - std::max(a[0], b[0]), iw = std::min(a[3], b[3]) - std::max(a[1], b[1]);
    if (ih <= 0 || iw <= 0) return 0.0;
    const double inter = ih * iw;
    return inter / (area_a + area_b - inter);
  };
  std::vector<int64_t> selected_rows;  // (batch, class, box) triples
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k) {
      const double* s = &sc[(b * K + k) * S];
      std::vector<int64_t> order;
      for (int64_t i = 0; i < S; ++i)
        if (!score_threshold || s[i] > *score_threshold) order.push_back(i);
      std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return s[i] > s[j]; });
      std::vector<int64_t> kept;
      for (int64_t i : order) {
        if (static_cast<int64_t>(kept.size()) >= max_output_boxes_per_class) break;
        bool suppressed = false;
        for (int64_t j : kept)
          if (iou(corner[b * S + i], corner[b * S + j]) > iou_threshold) {
            suppressed = true;
            break;
          }
        if (suppressed) continue;
        kept.push_back(i);
        selected_rows.insert(selected_rows.end(), {b, k, i});
      }
    }
  return Tensor::from_vector(selected_rows, {static_cast<int64_t>(selected_rows.size() / 3), 3});
}

Tensor max_unpool(const Tensor& x, const Tensor& indices, const std::vector<int64_t>& kernel_shape,
                  const std::vector<int64_t>& strides, const std::vector<int64_t>& pads,
                  const std::optional<std::vector<int64_t>>& output_shape) {
  const char* op = "max_unpool";
  KILN_CHECK(x.defined() && indices.defined(), op, ": input and indices must be defined");
  KILN_CHECK_TYPE(x.dtype() != DType::b8, op, ": input must be numeric, got bool");
  KILN_CHECK_TYPE(indices.dtype() == DType::i64 || indices.dtype() == DType::i32, op,
                  ": indices must be i64 or i32, got ", dtype_name(indices.dtype()));
  KILN_CHECK(x.dim() >= 3 && indices.shape() == x.shape(), op, ": input (N, C, d...) and indices must share a shape, got ",
             shape_str(x.shape()), " and ", shape_str(indices.shape()));
  const int64_t sd = x.dim() - 2;
  KILN_CHECK(static_cast<int64_t>(kernel_shape.size()) == sd && (strides.empty() || static_cast<int64_t>(strides.size()) == sd) &&
                 (pads.empty() || static_cast<int64_t>(pads.size()) == 2 * sd),
             op, ": kernel_shape ", shape_str(kernel_shape), ", strides ", shape_str(strides), " and pads ",
             shape_str(pads), " do not fit ", sd, " spatial dims");
  // The indices address the default output shape; an explicit output_shape pads that tensor at
  // the end of each spatial dim (ONNX's test data), so each index is re-raveled into it.
  Shape base = x.shape();
  for (int64_t d = 0; d < sd; ++d) {
    const int64_t s = strides.empty() ? 1 : strides[d], pb = pads.empty() ? 0 : pads[d],
                  pe = pads.empty() ? 0 : pads[sd + d];
    base[2 + d] = (x.shape()[2 + d] - 1) * s + kernel_shape[d] - pb - pe;
    KILN_CHECK(base[2 + d] >= 0, op, ": the output would have a negative size in spatial dim ", d);
  }
  Shape out_shape = base;
  if (output_shape) {
    KILN_CHECK(static_cast<int64_t>(output_shape->size()) == x.dim() && (*output_shape)[0] == x.shape()[0] &&
                   (*output_shape)[1] == x.shape()[1],
               op, ": output_shape ", shape_str(*output_shape), " must be (N, C, d...) for input ", shape_str(x.shape()));
    out_shape = *output_shape;
  }
  Tensor out = Tensor::zeros(out_shape, x.dtype());
  int64_t base_total = 1;
  for (int64_t d : base) base_total *= d;
  std::vector<int64_t> idx = indices.to_vector<int64_t>();
  for (int64_t& i : idx) {
    KILN_CHECK_INDEX(i >= 0 && i < base_total, op, ": index ", i, " is out of range for the unpooled shape ",
                     shape_str(base));
    int64_t rest = i, flat = 0, mul = 1;
    for (int64_t d = x.dim() - 1; d >= 0; --d) {
      const int64_t coord = rest % base[d];
      rest /= base[d];
      KILN_CHECK_INDEX(coord < out_shape[d], op, ": index ", i, " of the unpooled shape ", shape_str(base),
                       " lies outside output_shape ", shape_str(out_shape));
      flat += coord * mul;
      mul *= out_shape[d];
    }
    i = flat;
  }
  Tensor xc = contiguous_raw(x);
  dispatch_all(x.dtype(), [&]<typename T>() {
    const T* src = xc.data<T>();
    T* dst = out.data<T>();
    for (size_t i = 0; i < idx.size(); ++i) dst[idx[i]] = src[i];
  });
  return out;
}

}  // namespace kiln::ops
