// ONNX operators whose Kiln graph op is in ops/indexing_extra.h (graph form in
// graph/kernels_indexing.cpp): scatter/gather families, rearrangements, Unique, NonZero, LRN,
// MeanVarianceNormalization and Det. Most take ONNX's inputs and attributes unchanged.
#include "kiln/io/onnx/onnx_convert.h"

namespace kiln::io {

namespace {

constexpr char kScatterElements[] = "scatter_elements", kScatterNd[] = "scatter_nd", kGatherNd[] = "gather_nd",
               kCompress[] = "compress", kDepthToSpace[] = "depth_to_space", kSpaceToDepth[] = "space_to_depth",
               kReverseSequence[] = "reverse_sequence", kLrn[] = "lrn", kMvn[] = "mean_variance_norm", kDet[] = "det";

// NonZero's output is i64 whatever the input's dtype.
void nonzero(ConvertContext& ctx) { ctx.emit("nonzero", {ctx.required_in(0, "X")}, {}, DType::i64); }

// Unique's outputs after Y (indices, inverse_indices, counts) are i64 whatever X's dtype; emit
// gives every output X's dtype when shape inference was silent, so those are set here.
void unique(ConvertContext& ctx) {
  graph::Node* n = ctx.emit("unique", {ctx.required_in(0, "X")}, ctx.all_attrs());
  for (size_t k = 1; k < n->outputs.size(); ++k)
    if (!ctx.output_dtype(k)) n->outputs[k]->dtype = DType::i64;
}

}  // namespace

void register_indexing_converters(ConverterTable& t) {
  t.add("ScatterElements", passthrough<kScatterElements>);
  t.add("Scatter", passthrough<kScatterElements>);  // deprecated (opset 9-10): ScatterElements without reduction
  t.add("ScatterND", passthrough<kScatterNd>);
  t.add("GatherND", passthrough<kGatherNd>);
  t.add("Compress", passthrough<kCompress>);
  t.add("DepthToSpace", passthrough<kDepthToSpace>);  // before opset 11 there is no mode: DCR, the default
  t.add("SpaceToDepth", passthrough<kSpaceToDepth>);
  t.add("ReverseSequence", passthrough<kReverseSequence>);
  t.add("NonZero", nonzero);
  t.add("Unique", unique);
  t.add("LRN", passthrough<kLrn>);
  t.add("MeanVarianceNormalization", passthrough<kMvn>);
  t.add("Det", passthrough<kDet>);
}

}  // namespace kiln::io
