// conv_transpose2d (ONNX ConvTranspose, 2-D), forward only. A transposed convolution is the
// adjoint of a convolution's input gradient, so it reuses conv2d's pieces run backwards: per image
// one GEMM per group makes the columns  col (O*KH*KW, H*W) = W_g^T @ x_g,  and col2im scatters
// them into the output, with the ONNX begin pads as the (cropping) padding. col2im drops entries
// that fall outside the output and leaves uncovered positions at zero, which handles end pads,
// output_padding and negative (extending) pads alike.
#include <algorithm>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/conv_kernels.h"
#include "kiln/ops/cpu/gemm.h"
#include "kiln/ops/inference_nn.h"

namespace kiln::ops {

namespace {

struct TransposeShape {
  int64_t N, C, H, W;      // input
  int64_t O, Og, Cig;      // output channels, per group; input channels per group
  int64_t KH, KW, OH, OW;  // kernel; output size
  int64_t groups;
};

TransposeShape plan(const Tensor& x, const Tensor& w, const Tensor& b, const ConvTranspose2dOptions& opt) {
  KILN_CHECK(x.dim() == 4, "conv_transpose2d: input must be 4-d (N, C, H, W), got ", shape_str(x.shape()));
  KILN_CHECK(w.dim() == 4, "conv_transpose2d: weight must be 4-d (C, O/groups, KH, KW), got ", shape_str(w.shape()));
  KILN_CHECK_TYPE(x.dtype() == w.dtype() && (x.dtype() == DType::f32 || x.dtype() == DType::f64),
                  "conv_transpose2d: expected f32 or f64 input and weight of one dtype, got ", dtype_name(x.dtype()),
                  " and ", dtype_name(w.dtype()));
  TransposeShape s{};
  s.N = x.shape()[0], s.C = x.shape()[1], s.H = x.shape()[2], s.W = x.shape()[3];
  s.Og = w.shape()[1], s.KH = w.shape()[2], s.KW = w.shape()[3];
  s.groups = opt.groups;
  KILN_CHECK(s.groups >= 1 && s.C % s.groups == 0, "conv_transpose2d: groups (", s.groups,
             ") must divide the input channels (", s.C, ")");
  KILN_CHECK(w.shape()[0] == s.C, "conv_transpose2d: weight ", shape_str(w.shape()), " expects ", w.shape()[0],
             " input channels, but input ", shape_str(x.shape()), " has ", s.C);
  KILN_CHECK(s.KH >= 1 && s.KW >= 1, "conv_transpose2d: empty kernel ", shape_str(w.shape()));
  s.O = s.Og * s.groups, s.Cig = s.C / s.groups;
  for (int i = 0; i < 2; ++i) {
    KILN_CHECK(opt.stride[i] >= 1 && opt.dilation[i] >= 1 && opt.output_padding[i] >= 0,
               "conv_transpose2d: strides and dilations must be >= 1 and output_padding >= 0, got strides [",
               opt.stride[0], ", ", opt.stride[1], "], dilations [", opt.dilation[0], ", ", opt.dilation[1],
               "], output_padding [", opt.output_padding[0], ", ", opt.output_padding[1], "]");
  }
  s.OH = opt.stride[0] * (s.H - 1) + opt.output_padding[0] + opt.dilation[0] * (s.KH - 1) + 1 - opt.pads[0] -
         opt.pads[2];
  s.OW = opt.stride[1] * (s.W - 1) + opt.output_padding[1] + opt.dilation[1] * (s.KW - 1) + 1 - opt.pads[1] -
         opt.pads[3];
  KILN_CHECK(s.H >= 1 && s.W >= 1 && s.OH >= 1 && s.OW >= 1, "conv_transpose2d: input ", shape_str(x.shape()),
             " with kernel ", s.KH, "x", s.KW, " gives an empty output ", s.OH, "x", s.OW, " (pads too large?)");
  if (b.defined()) {
    KILN_CHECK(b.dim() == 1 && b.shape()[0] == s.O, "conv_transpose2d: bias ", shape_str(b.shape()),
               " does not match ", s.O, " output channels");
    KILN_CHECK_TYPE(b.dtype() == x.dtype(), "conv_transpose2d: bias dtype ", dtype_name(b.dtype()),
                    " differs from input ", dtype_name(x.dtype()));
  }
  return s;
}

template <typename T>
void conv_transpose_forward(const TransposeShape& s, const ConvTranspose2dOptions& opt, const T* x, const T* w,
                            const T* b, T* y) {
  const int64_t P = s.H * s.W, taps = s.Og * s.KH * s.KW, OP = s.OH * s.OW;
  std::vector<T> col(static_cast<size_t>(s.groups * taps * P));
  // col2im's view of the problem: the "image" is our output, its "output" is our input.
  cpu::ConvGeom g{};
  g.C = s.O, g.H = s.OH, g.W = s.OW, g.KH = s.KH, g.KW = s.KW, g.OH = s.H, g.OW = s.W;
  g.sh = opt.stride[0], g.sw = opt.stride[1], g.ph = opt.pads[0], g.pw = opt.pads[1];
  g.dh = opt.dilation[0], g.dw = opt.dilation[1], g.Cg = s.Og, g.group_rows = taps;
  for (int64_t n = 0; n < s.N; ++n) {
    // Per group: A = W_g^T (taps, Cig), element (r, k) at w[(g*Cig + k)*taps + r]; B = x_g (Cig, P).
    cpu::MatrixView a{w, s.Cig * taps, 1, taps};
    cpu::MatrixView bm{x + n * s.C * P, s.Cig * P, P, 1};
    cpu::gemm<T>(s.groups, taps, P, s.Cig, a, bm, col.data());
    T* yn = y + n * s.O * OP;
    cpu::col2im<T>(col.data(), yn, g, 1, P);
    if (b) {
      parallel_for(0, s.O, std::max<int64_t>(1, (1 << 14) / OP), [&](int64_t lo, int64_t hi) {
        for (int64_t o = lo; o < hi; ++o)
          for (int64_t i = 0; i < OP; ++i) yn[o * OP + i] += b[o];
      });
    }
  }
}

}  // namespace

Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor& b, const ConvTranspose2dOptions& opt) {
  const TransposeShape s = plan(x, w, b, opt);
  Tensor out = Tensor::empty({s.N, s.O, s.OH, s.OW}, x.dtype());
  if (out.numel() == 0) return out;
  if (s.C == 0) {  // no input channels: only the bias reaches the output
    fill_raw(out, 0.0);
    if (b.defined()) copy_into(out, b.detach().as_strided({s.N, s.O, s.OH, s.OW}, {0, b.stride(0), 0, 0}, b.offset()));
    return out;
  }
  Tensor xc = contiguous_raw(x), wc = contiguous_raw(w), bc = b.defined() ? contiguous_raw(b) : Tensor();
  if (x.dtype() == DType::f32)
    conv_transpose_forward<float>(s, opt, xc.data<float>(), wc.data<float>(), bc.defined() ? bc.data<float>() : nullptr,
                                  out.data<float>());
  else
    conv_transpose_forward<double>(s, opt, xc.data<double>(), wc.data<double>(),
                                   bc.defined() ? bc.data<double>() : nullptr, out.data<double>());
  return out;
}

}  // namespace kiln::ops
