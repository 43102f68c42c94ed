// ONNX detection and sampling operators whose Kiln graph ops are in ops/vision_ops.h (graph form
// in graph/kernels_vision.cpp): GridSample, RoiAlign, NonMaxSuppression, MaxUnpool; and the
// deprecated Upsample, which is a Resize (graph/kernels_quant.cpp).
#include "kiln/io/onnx/onnx_convert.h"

namespace kiln::io {

namespace {

constexpr char kGridSample[] = "grid_sample", kMaxUnpool[] = "max_unpool";

// RoiAlign-10 has no coordinate_transformation_mode: it behaves as output_half_pixel (opset 16
// added the attribute with the corrected half_pixel as default).
void roi_align(ConvertContext& ctx) {
  Attrs attrs = ctx.all_attrs();
  if (ctx.opset < 16) attrs["coordinate_transformation_mode"] = std::string("output_half_pixel");
  ctx.emit("roi_align", {ctx.required_in(0, "X"), ctx.required_in(1, "rois"), ctx.required_in(2, "batch_indices")},
           attrs);
}

// The selected indices are i64 whatever the boxes' dtype.
void non_max_suppression(ConvertContext& ctx) {
  std::vector<Value*> inputs = {ctx.required_in(0, "boxes"), ctx.required_in(1, "scores")};
  for (size_t i = 2; i < ctx.num_inputs(); ++i) inputs.push_back(ctx.in(i));
  while (!inputs.empty() && !inputs.back()) inputs.pop_back();
  ctx.emit("non_max_suppression", inputs, ctx.all_attrs(), DType::i64);
}

// Upsample (opsets 7-9; 10 deprecates it) is Resize-10: out[i] = in[floor(i / scale)] (nearest)
// or linear interpolation at i / scale, edges clamped: resize's (x, scales) form with asymmetric
// coordinates. Opset 7 gives the scales as an attribute, later opsets as input 1.
void upsample(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "X");
  std::string mode = ctx.attr_string("mode", "nearest");
  if (mode == "bilinear") mode = "linear";  // the opset-7 spelling for 4-d inputs
  if (mode != "nearest" && mode != "linear") ctx.invalid(detail::concat("mode must be nearest or linear, got '", mode, "'"));
  Value* scales = nullptr;
  if (ctx.opset < 9) {
    if (!ctx.has_attr("scales")) ctx.invalid("attribute scales is required");
    std::vector<double> s = ctx.attr_floats("scales");
    std::vector<float> f(s.begin(), s.end());
    scales = ctx.constant(Tensor::from_vector(f, {static_cast<int64_t>(f.size())}));
  } else {
    scales = ctx.required_in(1, "scales");
  }
  ctx.emit("resize", {x, scales},
           {{"mode", mode}, {"coordinate_transformation_mode", std::string("asymmetric")},
            {"nearest_mode", std::string("floor")}});
}

}  // namespace

void register_vision_converters(ConverterTable& t) {
  t.add("GridSample", passthrough<kGridSample>);
  t.add("RoiAlign", roi_align);
  t.add("NonMaxSuppression", non_max_suppression);
  t.add("MaxUnpool", passthrough<kMaxUnpool>);
  t.add("Upsample", upsample);
}

}  // namespace kiln::io
