// ONNX random operators with a graph kernel drawing from NumPy's legacy stream
// (graph/kernels_random.cpp): Bernoulli. (Dropout is in convert_elementwise.cpp.)
#include "kiln/io/onnx/onnx_convert.h"
#include "kiln/io/onnx/tensor_proto.h"

namespace kiln::io {

namespace {

// dtype (an ONNX element type; absent: the input's) becomes a Kiln dtype name; seed stays a float.
void bernoulli(ConvertContext& ctx) {
  Value* x = ctx.required_in(0, "input");
  Attrs attrs;
  DType dt = x->dtype;
  if (ctx.has_attr("dtype")) {
    dt = dtype_from_onnx(static_cast<int32_t>(ctx.attr_int("dtype", 1)), "Bernoulli dtype");
    attrs["dtype"] = std::string(dtype_name(dt));
  }
  if (ctx.has_attr("seed")) attrs["seed"] = ctx.attr_float("seed", 0.0);
  ctx.emit("bernoulli", {x}, attrs, dt);
}

}  // namespace

void register_random_converters(ConverterTable& t) { t.add("Bernoulli", bernoulli); }

}  // namespace kiln::io
