// conv2d, forward and backward. The op validates, then hands the work to one of several
// algorithms chosen per shape and per pass (ops/cpu/conv_algo.h): im2col+GEMM for any shape,
// direct loops for few input channels, Winograd F(2,3)/F(4,3) for 3x3 stride-1 layers. f64 always
// runs im2col over the reference GEMM (it is the oracle). Training keeps what the weight gradient
// of the chosen algorithm can reuse (im2col's columns, Winograd's transformed input), up to a
// size limit. Every algorithm adds partial sums in a fixed order, so gradients are deterministic.
#include <algorithm>
#include <chrono>
#include <vector>

#include "kiln/ops/elementwise.h"
#include "kiln/ops/autograd_record.h"
#include "kiln/ops/cpu/conv_algo.h"
#include "kiln/ops/cpu/conv_kernels.h"
#include "kiln/ops/nn_ops.h"
#include "kiln/ops/shape_ops.h"
#include "kiln/ops/trace.h"

namespace kiln::ops {

namespace {

using cpu::ConvAlgo;
using cpu::ConvPass;

cpu::ConvShape plan_conv(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& opt) {
  KILN_CHECK(x.dim() == 4, "conv2d: input must be 4-d (N, C, H, W), got ", shape_str(x.shape()));
  KILN_CHECK(w.dim() == 4, "conv2d: weight must be 4-d (O, C/groups, KH, KW), got ", shape_str(w.shape()));
  KILN_CHECK_TYPE(x.dtype() == w.dtype() && (x.dtype() == DType::f32 || x.dtype() == DType::f64),
                  "conv2d: expected f32 or f64 input and weight of one dtype, got ", dtype_name(x.dtype()), " and ",
                  dtype_name(w.dtype()));
  for (int i = 0; i < 2; ++i) {
    KILN_CHECK(opt.stride[i] >= 1 && opt.dilation[i] >= 1 && opt.padding[i] >= 0, "conv2d: stride and dilation must "
               "be >= 1 and padding >= 0, got stride [", opt.stride[0], ", ", opt.stride[1], "], padding [",
               opt.padding[0], ", ", opt.padding[1], "], dilation [", opt.dilation[0], ", ", opt.dilation[1], "]");
  }
  cpu::ConvShape p;
  p.bias = b.defined();
  p.N = x.shape()[0], p.C = x.shape()[1], p.H = x.shape()[2], p.W = x.shape()[3];
  p.O = w.shape()[0], p.KH = w.shape()[2], p.KW = w.shape()[3];
  p.sh = opt.stride[0], p.sw = opt.stride[1], p.ph = opt.padding[0], p.pw = opt.padding[1];
  p.dh = opt.dilation[0], p.dw = opt.dilation[1];
  p.groups = opt.groups;
  KILN_CHECK(p.groups >= 1 && p.C % p.groups == 0 && p.O % p.groups == 0, "conv2d: groups (", p.groups,
             ") must divide both input channels (", p.C, ") and output channels (", p.O, ")");
  KILN_CHECK(w.shape()[1] == p.Cg(), "conv2d: weight ", shape_str(w.shape()), " expects ", w.shape()[1] * p.groups,
             " input channels, but input ", shape_str(x.shape()), " has ", p.C, " (groups = ", p.groups, ")");
  KILN_CHECK(p.KH >= 1 && p.KW >= 1, "conv2d: empty kernel ", shape_str(w.shape()));
  const int64_t eh = opt.dilation[0] * (p.KH - 1) + 1, ew = opt.dilation[1] * (p.KW - 1) + 1;
  const int64_t hp = p.H + 2 * opt.padding[0], wp = p.W + 2 * opt.padding[1];
  KILN_CHECK(hp >= eh && wp >= ew, "conv2d: kernel ", p.KH, "x", p.KW, " (dilated ", eh, "x", ew,
             ") is larger than the padded input ", hp, "x", wp, " of ", shape_str(x.shape()));
  if (b.defined()) {
    KILN_CHECK(b.dim() == 1 && b.shape()[0] == p.O, "conv2d: bias ", shape_str(b.shape()), " does not match ", p.O,
               " output channels");
    KILN_CHECK_TYPE(b.dtype() == x.dtype(), "conv2d: bias dtype ", dtype_name(b.dtype()), " differs from input ",
                    dtype_name(x.dtype()));
  }
  return p;
}

template <typename T>
T* ptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// Best of two runs (the first one also pays for scratch allocation), in ms: the measurement
// behind the tuner's choice when KILN_AUTOTUNE=on.
template <typename F>
double time_best_of_two(F&& fn) {
  double best = 1e300;
  for (int r = 0; r < 2; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// The graph form's attributes (graph/kernels_nn.cpp).
TraceAttrs conv_trace_attrs(const Conv2dOptions& opt) {
  TraceAttrs a = {{"strides", std::vector<int64_t>{opt.stride[0], opt.stride[1]}},
                  {"pads", std::vector<int64_t>{opt.padding[0], opt.padding[1], opt.padding[0], opt.padding[1]}},
                  {"dilations", std::vector<int64_t>{opt.dilation[0], opt.dilation[1]}},
                  {"group", opt.groups}};
  if (opt.relu) a.push_back({"activation", std::string("relu")});
  if (opt.max_pool2) {  // the graph form of a fused max pool (graph/kernels_nn.cpp)
    a.push_back({"pool", std::string("max")});
    a.push_back({"pool_kernel_shape", std::vector<int64_t>{2, 2}});
    a.push_back({"pool_strides", std::vector<int64_t>{2, 2}});
    a.push_back({"pool_pads", std::vector<int64_t>{0, 0, 0, 0}});
    a.push_back({"pool_ceil_mode", int64_t{0}});
  }
  return a;
}

// conv2d with opt.max_pool2 (see nn_ops.h); opt.max_pool2 is cleared for the calls it makes.
Tensor conv2d_pooled(const Tensor& x, const Tensor& w, const Tensor& b, Conv2dOptions opt) {
  opt.max_pool2 = false;
  if (any_requires_grad({x, w, b})) return max_pool2d(conv2d(x, w, b, opt), {2, 2});
  const cpu::ConvShape s = plan_conv(x, w, b, opt);
  ConvAlgo algo = ConvAlgo::im2col;
  if (x.dtype() == DType::f32 && s.N > 0 && s.O > 0 && s.OH() >= 2 && s.OW() >= 2)
    algo = cpu::conv_algo_resolve(ConvAlgo::automatic, s, ConvPass::forward);
  if (!cpu::conv_algo_pools(algo)) {
    // Chunks of images whose convolution output (about 1 MiB) stays cache-resident until pooled.
    const int64_t per_image = std::max<int64_t>(1, s.O * s.OH() * s.OW() * 4);
    const int64_t chunk = std::clamp<int64_t>((int64_t{1} << 20) / per_image, 1, std::max<int64_t>(s.N, 1));
    if (chunk >= s.N) return max_pool2d(conv2d(x, w, b, opt), {2, 2});
    std::vector<Tensor> parts;
    for (int64_t n0 = 0; n0 < s.N; n0 += chunk)
      parts.push_back(max_pool2d(conv2d(slice(x, 0, n0, std::min(s.N, n0 + chunk)), w, b, opt), {2, 2}));
    return cat(parts, 0);
  }
  Tensor xc = contiguous_raw(x), wc = contiguous_raw(w), bc = b.defined() ? contiguous_raw(b) : Tensor();
  Tensor out = Tensor::empty({s.N, s.O, s.OH() / 2, s.OW() / 2}, x.dtype());
  cpu::conv_forward_pool2_f32(algo, s, xc.data<float>(), wc.data<float>(), ptr<float>(bc), out.data<float>(), {},
                              opt.relu);
  return out;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& opt) {
  TracedOp trace_;
  if (opt.max_pool2) return traced(trace_, "conv2d", {x, w, b}, conv2d_pooled(x, w, b, opt), conv_trace_attrs(opt));
  if (opt.relu && any_requires_grad({x, w, b})) {
    Conv2dOptions plain = opt;
    plain.relu = false;
    return traced(trace_, "conv2d", {x, w, b}, relu(conv2d(x, w, b, plain)), conv_trace_attrs(opt));
  }
  const cpu::ConvShape s = plan_conv(x, w, b, opt);
  Tensor xc = contiguous_raw(x), wc = contiguous_raw(w), bc = b.defined() ? contiguous_raw(b) : Tensor();
  Tensor out = Tensor::empty({s.N, s.O, s.OH(), s.OW()}, x.dtype());
  std::vector<Tensor> inputs{x, w};
  if (b.defined()) inputs.push_back(b);
  const bool track = any_requires_grad(inputs);
  const bool f32 = x.dtype() == DType::f32, empty = out.numel() == 0;
  // The forward algorithm, and the weight-gradient one it may save work for (a cache hit or the
  // heuristic; backward resolves again and uses the saved buffer only if they still agree).
  ConvAlgo fwd = ConvAlgo::im2col, bwd_w = ConvAlgo::im2col;
  if (f32 && !empty) {
    fwd = cpu::conv_algo_resolve(ConvAlgo::automatic, s, ConvPass::forward, [&](ConvAlgo c) {
      return time_best_of_two([&] {
        cpu::conv_forward_f32(c, s, xc.data<float>(), wc.data<float>(), ptr<float>(bc), out.data<float>(), {},
                              opt.relu);
      });
    });
    if (track && w.requires_grad()) bwd_w = cpu::conv_algo_resolve(ConvAlgo::automatic, s, ConvPass::backward_weights);
  }
  const int64_t keep_elems = !track || !w.requires_grad() || empty ? 0
                             : f32 ? cpu::conv_saved_elems(fwd, bwd_w, s)
                                   : cpu::im2col_saved_elems(s);
  Tensor keep = keep_elems > 0 && keep_elems <= cpu::conv_keep_columns_limit() ? Tensor::empty({keep_elems}, x.dtype())
                                                                               : Tensor();
  if (!empty) {
    if (f32)
      cpu::conv_forward_keep_f32(fwd, s, xc.data<float>(), wc.data<float>(), ptr<float>(bc), out.data<float>(),
                                 ptr<float>(keep), opt.relu);
    else
      cpu::im2col_conv_forward<double>(s, xc.data<double>(), wc.data<double>(), ptr<double>(bc), out.data<double>(),
                                       ptr<double>(keep), opt.relu);
  }
  if (!track) return traced(trace_, "conv2d", {x, w, b}, out, conv_trace_attrs(opt));
  return traced(
      trace_, "conv2d", {x, w, b},
      record("conv2d", inputs, out,
             [s, fwd, x_ = SavedTensor(xc, "conv2d"), w_ = SavedTensor(wc, "conv2d"), keep](
                 const Tensor& g, const std::vector<bool>& need) {
               const Tensor& x = x_.get();
               const Tensor& w = w_.get();
               Tensor gc = contiguous_raw(g);
               std::vector<Tensor> grads(need.size());
               if (need[0]) grads[0] = Tensor::empty(x.shape(), x.dtype());
               if (need[1]) grads[1] = Tensor::empty(w.shape(), w.dtype());
               if (need.size() > 2 && need[2]) grads[2] = Tensor::empty({s.O}, w.dtype());
               const Tensor gb = grads.size() > 2 ? grads[2] : Tensor();
               if (s.N == 0 || s.O == 0) {
                 for (auto& t : grads)
                   if (t.defined()) fill_raw(t, 0.0);
                 return grads;
               }
               if (x.dtype() == DType::f64) {
                 cpu::im2col_conv_backward<double>(s, x.data<double>(), w.data<double>(), gc.data<double>(),
                                                   ptr<double>(grads[0]), ptr<double>(grads[1]), ptr<double>(gb),
                                                   ptr<double>(keep));
                 return grads;
               }
               const float *xd = x.data<float>(), *wd = w.data<float>(), *gy = gc.data<float>();
               float *gx = ptr<float>(grads[0]), *gw = ptr<float>(grads[1]), *gbd = ptr<float>(gb);
               ConvAlgo data = ConvAlgo::im2col, weights = ConvAlgo::im2col;
               if (gx)
                 data = cpu::conv_algo_resolve(ConvAlgo::automatic, s, ConvPass::backward_data, [&](ConvAlgo c) {
                   return time_best_of_two([&] { cpu::conv_backward_data_f32(c, s, gy, wd, gx); });
                 });
               if (gw)
                 weights = cpu::conv_algo_resolve(ConvAlgo::automatic, s, ConvPass::backward_weights, [&](ConvAlgo c) {
                   return time_best_of_two([&] { cpu::conv_backward_weights_f32(c, s, xd, gy, gw, gbd); });
                 });
               const bool saved_ok = keep.defined() && cpu::conv_saved_elems(fwd, weights, s) == keep.numel();
               cpu::conv_backward_f32(data, weights, s, xd, wd, gy, gx, gw, gbd,
                                      saved_ok ? keep.data<float>() : nullptr);
               return grads;
             }),
      conv_trace_attrs(opt));
}

}  // namespace kiln::ops
