// conv_nd, conv_transpose_nd, max_pool_nd and avg_pool_nd (spatial_nd.h). Every problem is
// normalised to 3 spatial dims by prepending dims of size 1 (kernel 1, stride 1, no padding), so
// one loop nest serves 1-d, 2-d and 3-d; row-major indices are unchanged by the extra dims, and so
// are column-major ones (a size-1 dim has position 0 and multiplies the next stride by 1).
#include "kiln/ops/spatial_nd.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/gemm.h"

namespace kiln::ops {

namespace {

constexpr int64_t kGrain = 1 << 14;
using Dims3 = std::array<int64_t, 3>;

// The problem in 3-d form: spatial dim i of an nd-d input sits at position 3 - nd + i.
struct Geom {
  int64_t nd = 0, N = 0, C = 0;
  Dims3 in{1, 1, 1}, out{1, 1, 1}, k{1, 1, 1}, s{1, 1, 1}, d{1, 1, 1}, pb{0, 0, 0}, pe{0, 0, 0};
  int64_t in_size() const { return in[0] * in[1] * in[2]; }
  int64_t out_size() const { return out[0] * out[1] * out[2]; }
  int64_t taps() const { return k[0] * k[1] * k[2]; }
};

std::vector<int64_t> per_dim(const std::vector<int64_t>& v, int64_t nd, int64_t fallback, const char* op,
                             const char* what, int64_t mult = 1) {
  if (v.empty()) return std::vector<int64_t>(static_cast<size_t>(nd * mult), fallback);
  KILN_CHECK(static_cast<int64_t>(v.size()) == nd * mult, op, ": ", what, " has ", v.size(), " entries, expected ",
             nd * mult, " for ", nd, " spatial dims");
  return v;
}

// Fills in, k, s, d and the pads of g (not out) from x's shape, the kernel and the options.
void spatial_setup(Geom& g, const char* op, const Tensor& x, const std::vector<int64_t>& kernel,
                   const SpatialNdOptions& o, bool pads_from_auto) {
  KILN_CHECK(x.defined(), op, ": input is undefined");
  KILN_CHECK(x.dim() >= 3 && x.dim() <= 5, op, ": input must be (N, C, d...) with 1 to 3 spatial dims, got ",
             shape_str(x.shape()));
  g.nd = x.dim() - 2;
  g.N = x.shape()[0], g.C = x.shape()[1];
  const int64_t nd = g.nd;
  KILN_CHECK(static_cast<int64_t>(kernel.size()) == nd, op, ": kernel_shape ", shape_str(kernel), " does not have ",
             nd, " entries for input ", shape_str(x.shape()));
  std::vector<int64_t> s = per_dim(o.strides, nd, 1, op, "strides");
  std::vector<int64_t> d = per_dim(o.dilations, nd, 1, op, "dilations");
  std::vector<int64_t> p = per_dim(o.pads, nd, 0, op, "pads", 2);
  for (int64_t i = 0; i < nd; ++i) {
    const size_t iu = static_cast<size_t>(i), j = static_cast<size_t>(3 - nd + i);
    KILN_CHECK(kernel[iu] >= 1 && s[iu] >= 1 && d[iu] >= 1, op, ": kernel_shape ", shape_str(kernel), ", strides ",
               shape_str(s), " and dilations ", shape_str(d), " must be positive");
    g.in[j] = x.shape()[2 + i], g.k[j] = kernel[iu], g.s[j] = s[iu], g.d[j] = d[iu];
    g.pb[j] = p[iu], g.pe[j] = p[iu + static_cast<size_t>(nd)];
    if (o.auto_pad == AutoPad::valid) {
      g.pb[j] = g.pe[j] = 0;
    } else if (pads_from_auto && (o.auto_pad == AutoPad::same_upper || o.auto_pad == AutoPad::same_lower)) {
      // SAME: out = ceil(in / stride); the extra cell of an odd total goes last (UPPER) or first.
      const int64_t out = (g.in[j] + g.s[j] - 1) / g.s[j];
      const int64_t total = std::max<int64_t>((out - 1) * g.s[j] + (g.k[j] - 1) * g.d[j] + 1 - g.in[j], 0);
      const int64_t small = total / 2;
      g.pb[j] = o.auto_pad == AutoPad::same_upper ? small : total - small;
      g.pe[j] = total - g.pb[j];
    }
    KILN_CHECK(g.pb[j] >= 0 && g.pe[j] >= 0, op, ": pads ", shape_str(p), " must not be negative");
  }
}

// Output size of a window op: floor (or ceil_mode: ceil, with the last window starting inside
// the input or its begin padding, as ONNX and PyTorch) of (padded - window) / stride, plus one.
void window_output(Geom& g, const char* op, const Tensor& x, bool ceil_mode) {
  for (size_t j = 0; j < 3; ++j) {
    const int64_t len = g.in[j] + g.pb[j] + g.pe[j], span = (g.k[j] - 1) * g.d[j] + 1;
    KILN_CHECK(len >= span, op, ": the window (", span, " cells with dilation) is larger than the padded input (",
               len, ") of ", shape_str(x.shape()));
    g.out[j] = (len - span) / g.s[j] + 1;
    if (ceil_mode) {
      int64_t c = (len - span + g.s[j] - 1) / g.s[j] + 1;
      if (c > g.out[j] && (c - 1) * g.s[j] >= g.in[j] + g.pb[j]) --c;
      g.out[j] = c;
    }
  }
}

Shape out_shape(const Geom& g, int64_t channels) {
  Shape sh{g.N, channels};
  for (int64_t i = 0; i < g.nd; ++i) sh.push_back(g.out[static_cast<size_t>(3 - g.nd + i)]);
  return sh;
}

void check_float_input(const char* op, const Tensor& t, const char* what, DType want) {
  KILN_CHECK_TYPE(t.dtype() == DType::f32 || t.dtype() == DType::f64, op, ": ", what,
                  " must be f32 or f64, got ", dtype_name(t.dtype()));
  KILN_CHECK_TYPE(t.dtype() == want, op, ": ", what, " dtype ", dtype_name(t.dtype()), " differs from the input's ",
                  dtype_name(want));
}

void check_weight(const char* op, const Tensor& x, const Tensor& w, const SpatialNdOptions& o) {
  KILN_CHECK(w.defined(), op, ": weight is undefined");
  KILN_CHECK(w.dim() == x.dim(), op, ": weight ", shape_str(w.shape()), " and input ", shape_str(x.shape()),
             " differ in rank");
  if (!o.kernel_shape.empty()) {
    Shape k(w.shape().begin() + 2, w.shape().end());
    KILN_CHECK(k == o.kernel_shape, op, ": kernel_shape ", shape_str(o.kernel_shape), " differs from weight ",
               shape_str(w.shape()));
  }
  KILN_CHECK(o.group >= 1, op, ": group must be >= 1, got ", o.group);
}

std::vector<int64_t> kernel_of(const Tensor& w) { return {w.shape().begin() + 2, w.shape().end()}; }

bool is_half(const Tensor& t) { return t.defined() && (t.dtype() == DType::f16 || t.dtype() == DType::bf16); }
Tensor to_f32(const Tensor& t) { return t.defined() ? to_dtype_raw(t, DType::f32) : t; }

// ---- conv: per image, im2col (group, Cg*taps, L) then one batched GEMM over the groups ----

// cols row r = (c, ka, kb, kc) holds the input cell each output position reads through tap (ka, kb, kc).
template <typename T>
void im2col(const Geom& g, const T* x, T* cols) {  // x (C, in...) -> cols (C * taps, out...)
  const int64_t taps = g.taps(), L = g.out_size(), IS = g.in_size();
  parallel_for(0, g.C * taps, std::max<int64_t>(1, kGrain / std::max<int64_t>(L, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t c = r / taps, t = r % taps;
      const int64_t ka = t / (g.k[1] * g.k[2]), kb = t / g.k[2] % g.k[1], kc = t % g.k[2];
      const T* xc = x + c * IS;
      T* row = cols + r * L;
      for (int64_t oa = 0; oa < g.out[0]; ++oa) {
        const int64_t ia = oa * g.s[0] - g.pb[0] + ka * g.d[0];
        for (int64_t ob = 0; ob < g.out[1]; ++ob) {
          const int64_t ib = ob * g.s[1] - g.pb[1] + kb * g.d[1];
          T* dst = row + (oa * g.out[1] + ob) * g.out[2];
          if (ia < 0 || ia >= g.in[0] || ib < 0 || ib >= g.in[1]) {
            std::fill(dst, dst + g.out[2], T(0));
            continue;
          }
          const T* src = xc + (ia * g.in[1] + ib) * g.in[2];
          for (int64_t oc = 0; oc < g.out[2]; ++oc) {
            const int64_t ic = oc * g.s[2] - g.pb[2] + kc * g.d[2];
            dst[oc] = ic >= 0 && ic < g.in[2] ? src[ic] : T(0);
          }
        }
      }
    }
  });
}

// The adjoint of im2col: adds each cols row into the output cells it came from. Parallel over
// channels, since the rows of one channel write the same cells.
template <typename T>
void col2im(const Geom& g, const T* cols, T* y) {  // cols (C * taps, out...) -> y (C, in...), accumulating
  const int64_t taps = g.taps(), L = g.out_size(), IS = g.in_size();
  parallel_for(0, g.C, std::max<int64_t>(1, kGrain / std::max<int64_t>(L * taps, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c)
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t ka = t / (g.k[1] * g.k[2]), kb = t / g.k[2] % g.k[1], kc = t % g.k[2];
        const T* row = cols + (c * taps + t) * L;
        T* yc = y + c * IS;
        for (int64_t oa = 0; oa < g.out[0]; ++oa) {
          const int64_t ia = oa * g.s[0] - g.pb[0] + ka * g.d[0];
          if (ia < 0 || ia >= g.in[0]) continue;
          for (int64_t ob = 0; ob < g.out[1]; ++ob) {
            const int64_t ib = ob * g.s[1] - g.pb[1] + kb * g.d[1];
            if (ib < 0 || ib >= g.in[1]) continue;
            const T* src = row + (oa * g.out[1] + ob) * g.out[2];
            T* dst = yc + (ia * g.in[1] + ib) * g.in[2];
            for (int64_t oc = 0; oc < g.out[2]; ++oc) {
              const int64_t ic = oc * g.s[2] - g.pb[2] + kc * g.d[2];
              if (ic >= 0 && ic < g.in[2]) dst[ic] += src[oc];
            }
          }
        }
      }
  });
}

template <typename T>
void add_bias(T* y, const T* b, int64_t channels, int64_t per_channel) {
  if (!b) return;
  parallel_for(0, channels, std::max<int64_t>(1, kGrain / std::max<int64_t>(per_channel, 1)),
               [&](int64_t lo, int64_t hi) {
                 for (int64_t c = lo; c < hi; ++c)
                   for (int64_t i = 0; i < per_channel; ++i) y[c * per_channel + i] += b[c];
               });
}

void check_bias(const char* op, const Tensor& x, const Tensor& b, int64_t M) {
  if (!b.defined()) return;
  KILN_CHECK(b.dim() == 1 && b.shape()[0] == M, op, ": bias ", shape_str(b.shape()), " does not match ", M,
             " output channels");
  check_float_input(op, b, "bias", x.dtype());
}

}  // namespace

AutoPad auto_pad_from_name(std::string_view name) {
  if (name == "NOTSET" || name.empty()) return AutoPad::notset;
  if (name == "VALID") return AutoPad::valid;
  if (name == "SAME_UPPER") return AutoPad::same_upper;
  if (name == "SAME_LOWER") return AutoPad::same_lower;
  throw ValueError(detail::concat("unknown auto_pad \"", name, "\" (NOTSET, VALID, SAME_UPPER or SAME_LOWER)"));
}

// ---------------------------------------------------------------- conv_nd

Tensor conv_nd(const Tensor& x, const Tensor& w, const Tensor& b, const SpatialNdOptions& o) {
  const char* op = "conv_nd";
  KILN_CHECK(x.defined(), op, ": input is undefined");
  if (is_half(x) && w.defined() && w.dtype() == x.dtype())  // f16/bf16 compute in f32
    return to_dtype_raw(conv_nd(to_f32(x), to_f32(w), b.defined() && b.dtype() == x.dtype() ? to_f32(b) : b, o),
                        x.dtype());
  check_weight(op, x, w, o);
  check_float_input(op, x, "input", x.dtype());
  check_float_input(op, w, "weight", x.dtype());
  Geom g;
  spatial_setup(g, op, x, kernel_of(w), o, /*pads_from_auto=*/true);
  window_output(g, op, x, false);
  const int64_t G = o.group, M = w.shape()[0];
  KILN_CHECK(g.C % G == 0 && M % G == 0 && w.shape()[1] * G == g.C, op, ": input ", shape_str(x.shape()),
             " and weight ", shape_str(w.shape()), " do not fit group ", G,
             " (need C and M divisible by group and W's dim 1 = C / group)");
  check_bias(op, x, b, M);
  Tensor out = Tensor::empty(out_shape(g, M), x.dtype());
  if (out.numel() == 0) return out;
  Tensor xc = contiguous_raw(x), wc = contiguous_raw(w), bc = b.defined() ? contiguous_raw(b) : Tensor();
  dispatch_float(x.dtype(), op, [&]<typename T>() {
    const int64_t Cg = g.C / G, Mg = M / G, K = Cg * g.taps(), L = g.out_size(), IS = g.in_size();
    std::vector<T> cols(static_cast<size_t>(g.C * g.taps() * L));  // (G, Cg * taps, L)
    const T* px = xc.data<T>();
    T* py = out.data<T>();
    for (int64_t n = 0; n < g.N; ++n) {
      im2col<T>(g, px + n * g.C * IS, cols.data());
      // Per group: W_g (Mg, K) @ cols_g (K, L) -> y_g (Mg, L); y_n (M, L) is the groups stacked.
      cpu::MatrixView a{wc.data<T>(), Mg * K, K, 1};
      cpu::MatrixView bm{cols.data(), K * L, L, 1};
      cpu::gemm<T>(G, Mg, L, K, a, bm, py + n * M * L);
      add_bias<T>(py + n * M * L, bc.defined() ? bc.data<T>() : nullptr, M, L);
    }
  });
  return out;
}

// ---------------------------------------------------------------- conv_transpose_nd

Tensor conv_transpose_nd(const Tensor& x, const Tensor& w, const Tensor& b, const SpatialNdOptions& o) {
  const char* op = "conv_transpose_nd";
  KILN_CHECK(x.defined(), op, ": input is undefined");
  if (is_half(x) && w.defined() && w.dtype() == x.dtype())
    return to_dtype_raw(
        conv_transpose_nd(to_f32(x), to_f32(w), b.defined() && b.dtype() == x.dtype() ? to_f32(b) : b, o), x.dtype());
  check_weight(op, x, w, o);
  check_float_input(op, x, "input", x.dtype());
  check_float_input(op, w, "weight", x.dtype());
  // The geometry of the conv whose adjoint this is: its input is our output, its output our input.
  Geom in_g;  // strides, dilations, explicit pads of our x
  spatial_setup(in_g, op, x, kernel_of(w), o, /*pads_from_auto=*/false);
  const int64_t nd = in_g.nd;
  std::vector<int64_t> outpad = per_dim(o.output_padding, nd, 0, op, "output_padding");
  std::vector<int64_t> oshape = o.output_shape;
  if (static_cast<int64_t>(oshape.size()) == nd + 2) oshape.erase(oshape.begin(), oshape.begin() + 2);
  if (oshape.empty() && (o.auto_pad == AutoPad::same_upper || o.auto_pad == AutoPad::same_lower))
    for (int64_t i = 0; i < nd; ++i) oshape.push_back(x.shape()[2 + i] * in_g.s[static_cast<size_t>(3 - nd + i)]);
  KILN_CHECK(oshape.empty() || static_cast<int64_t>(oshape.size()) == nd, op, ": output_shape ", shape_str(oshape),
             " needs ", nd, " entries");
  Geom g = in_g;
  g.in = in_g.out, g.out = in_g.in;  // roles swapped: g.in is our output, g.out our input
  for (int64_t i = 0; i < nd; ++i) {
    const size_t j = static_cast<size_t>(3 - nd + i), iu = static_cast<size_t>(i);
    const int64_t full = g.s[j] * (in_g.in[j] - 1) + outpad[iu] + (g.k[j] - 1) * g.d[j] + 1;
    if (!oshape.empty()) {
      // ONNX: total = full - output_shape; SAME_UPPER puts floor(total / 2) first, else last.
      const int64_t total = full - oshape[iu];
      const int64_t half = total >= 0 ? total / 2 : -((-total + 1) / 2);  // floor(total / 2)
      g.pb[j] = o.auto_pad == AutoPad::same_upper ? half : total - half;
      g.pe[j] = total - g.pb[j];
    }
    g.in[j] = full - g.pb[j] - g.pe[j];
    KILN_CHECK(g.in[j] >= 1, op, ": input ", shape_str(x.shape()), " gives an empty output along spatial dim ", i);
    // Output cells reached only through negative pads (an output_shape larger than `full`) get
    // just the bias; col2im checks bounds, so negative pads shift taps in or out correctly.
  }
  const int64_t G = o.group, C = x.shape()[1];
  KILN_CHECK(C % G == 0 && w.shape()[0] == C, op, ": input ", shape_str(x.shape()), " and weight ",
             shape_str(w.shape()), " do not fit group ", G, " (W must be (C, M / group, k...))");
  const int64_t Mg = w.shape()[1], M = Mg * G;
  check_bias(op, x, b, M);
  Shape oshp{g.N, M};
  for (int64_t i = 0; i < nd; ++i) oshp.push_back(g.in[static_cast<size_t>(3 - nd + i)]);
  Tensor out = Tensor::zeros(oshp, x.dtype());
  if (out.numel() == 0) return out;
  Tensor xc = contiguous_raw(x), wc = contiguous_raw(w), bc = b.defined() ? contiguous_raw(b) : Tensor();
  dispatch_float(x.dtype(), op, [&]<typename T>() {
    const int64_t Cg = C / G, R = Mg * g.taps(), Lin = g.out_size(), OS = g.in_size();
    std::vector<T> cols(static_cast<size_t>(G * R * Lin));  // (G, Mg * taps, Lin)
    Geom cg = g;
    cg.C = M;  // col2im over every output channel: row (m, tap) of group gi is row gi*R + m*taps + tap
    const T* px = xc.data<T>();
    T* py = out.data<T>();
    for (int64_t n = 0; n < g.N; ++n) {
      // Per group: A = W_g^T (R, Cg), element (r, c) at w[(gi*Cg + c) * R + r]; B = x_g (Cg, Lin).
      cpu::MatrixView a{wc.data<T>(), Cg * R, 1, R};
      cpu::MatrixView bm{px + n * C * Lin, Cg * Lin, Lin, 1};
      cpu::gemm<T>(G, R, Lin, Cg, a, bm, cols.data());
      col2im<T>(cg, cols.data(), py + n * M * OS);
      add_bias<T>(py + n * M * OS, bc.defined() ? bc.data<T>() : nullptr, M, OS);
    }
  });
  return out;
}

// ---------------------------------------------------------------- pooling

namespace {

Geom pool_geom(const char* op, const Tensor& x, const SpatialNdOptions& o) {
  Geom g;
  spatial_setup(g, op, x, o.kernel_shape, o, /*pads_from_auto=*/true);
  window_output(g, op, x, o.ceil_mode && o.auto_pad != AutoPad::same_upper && o.auto_pad != AutoPad::same_lower);
  return g;
}

// Calls fn(ia, ib, ic) for every window cell of output position (oa, ob, oc), padding included;
// taps in row-major order, so the first maximum in the window is the first one met.
template <typename Fn>
void for_window(const Geom& g, int64_t oa, int64_t ob, int64_t oc, Fn&& fn) {
  for (int64_t ka = 0; ka < g.k[0]; ++ka) {
    const int64_t ia = oa * g.s[0] - g.pb[0] + ka * g.d[0];
    for (int64_t kb = 0; kb < g.k[1]; ++kb) {
      const int64_t ib = ob * g.s[1] - g.pb[1] + kb * g.d[1];
      for (int64_t kc = 0; kc < g.k[2]; ++kc) fn(ia, ib, oc * g.s[2] - g.pb[2] + kc * g.d[2]);
    }
  }
}

bool inside(const Geom& g, int64_t ia, int64_t ib, int64_t ic) {
  return ia >= 0 && ia < g.in[0] && ib >= 0 && ib < g.in[1] && ic >= 0 && ic < g.in[2];
}

}  // namespace

MaxPoolNdResult max_pool_nd(const Tensor& x, const SpatialNdOptions& o, bool with_indices) {
  const char* op = "max_pool_nd";
  KILN_CHECK(x.defined(), op, ": input is undefined");
  KILN_CHECK(o.storage_order == 0 || o.storage_order == 1, op, ": storage_order must be 0 or 1, got ",
             o.storage_order);
  if (is_half(x)) {  // exact: the maximum is one of the inputs
    MaxPoolNdResult r = max_pool_nd(to_f32(x), o, with_indices);
    r.values = to_dtype_raw(r.values, x.dtype());
    return r;
  }
  const Geom g = pool_geom(op, x, o);
  const Shape shape = out_shape(g, g.C);
  MaxPoolNdResult r{Tensor::empty(shape, x.dtype()), with_indices ? Tensor::empty(shape, DType::i64) : Tensor()};
  if (r.values.numel() == 0) return r;
  Tensor xc = contiguous_raw(x);
  const int64_t IS = g.in_size(), OS = g.out_size();
  const bool col_major = o.storage_order == 1;
  dispatch_numeric(x.dtype(), op, [&]<typename T>() {
    const T* px = xc.data<T>();
    T* py = r.values.data<T>();
    int64_t* pi = with_indices ? r.indices.data<int64_t>() : nullptr;
    const T lowest = std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                          : std::numeric_limits<T>::lowest();
    parallel_for(0, g.N * g.C, std::max<int64_t>(1, kGrain / std::max<int64_t>(OS * g.taps(), 1)),
                 [&](int64_t lo, int64_t hi) {
      for (int64_t nc = lo; nc < hi; ++nc) {
        const T* xs = px + nc * IS;
        int64_t q = nc * OS;
        for (int64_t oa = 0; oa < g.out[0]; ++oa)
          for (int64_t ob = 0; ob < g.out[1]; ++ob)
            for (int64_t oc = 0; oc < g.out[2]; ++oc, ++q) {
              T best = lowest;
              int64_t ba = -1, bb = 0, bc = 0;  // ba < 0: no cell of the window is inside x
              for_window(g, oa, ob, oc, [&](int64_t ia, int64_t ib, int64_t ic) {
                if (!inside(g, ia, ib, ic)) return;
                const T v = xs[(ia * g.in[1] + ib) * g.in[2] + ic];
                if (ba < 0 || v > best) best = v, ba = ia, bb = ib, bc = ic;
              });
              py[q] = best;
              if (pi) {
                const int64_t at = col_major ? ba + g.in[0] * (bb + g.in[1] * bc) : (ba * g.in[1] + bb) * g.in[2] + bc;
                pi[q] = ba < 0 ? -1 : nc * IS + at;
              }
            }
      }
    });
  });
  return r;
}

Tensor avg_pool_nd(const Tensor& x, const SpatialNdOptions& o) {
  const char* op = "avg_pool_nd";
  KILN_CHECK(x.defined(), op, ": input is undefined");
  if (is_half(x)) return to_dtype_raw(avg_pool_nd(to_f32(x), o), x.dtype());
  check_float_input(op, x, "input", x.dtype());
  const Geom g = pool_geom(op, x, o);
  Tensor out = Tensor::empty(out_shape(g, g.C), x.dtype());
  if (out.numel() == 0) return out;
  Tensor xc = contiguous_raw(x);
  const int64_t IS = g.in_size(), OS = g.out_size();
  // count_include_pad counts the cells inside the padded input [-pb, in + pe), never ceil_mode's overhang.
  const bool count_pad = o.count_include_pad;
  dispatch_float(x.dtype(), op, [&]<typename T>() {
    const T* px = xc.data<T>();
    T* py = out.data<T>();
    parallel_for(0, g.N * g.C, std::max<int64_t>(1, kGrain / std::max<int64_t>(OS * g.taps(), 1)),
                 [&](int64_t lo, int64_t hi) {
      for (int64_t nc = lo; nc < hi; ++nc) {
        const T* xs = px + nc * IS;
        int64_t q = nc * OS;
        for (int64_t oa = 0; oa < g.out[0]; ++oa)
          for (int64_t ob = 0; ob < g.out[1]; ++ob)
            for (int64_t oc = 0; oc < g.out[2]; ++oc, ++q) {
              double sum = 0.0;
              int64_t count = 0;
              for_window(g, oa, ob, oc, [&](int64_t ia, int64_t ib, int64_t ic) {
                if (inside(g, ia, ib, ic)) {
                  sum += static_cast<double>(xs[(ia * g.in[1] + ib) * g.in[2] + ic]);
                  ++count;
                } else if (count_pad && ia >= -g.pb[0] && ia < g.in[0] + g.pe[0] && ib >= -g.pb[1] &&
                           ib < g.in[1] + g.pe[1] && ic >= -g.pb[2] && ic < g.in[2] + g.pe[2]) {
                  ++count;
                }
              });
              py[q] = static_cast<T>(count > 0 ? sum / static_cast<double>(count) : 0.0);
            }
      }
    });
  });
  return out;
}

}  // namespace kiln::ops
