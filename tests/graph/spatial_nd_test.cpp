// Tests for the N-d convolution and pooling graph ops (ops/spatial_nd.h, graph/kernels_spatial_nd.cpp)
// against naive references written here from the ONNX formulas (direct loops in double over every
// output cell and window tap), plus the ONNX spec's hand-computed examples.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "kiln/graph/kernels.h"
#include "kiln/ops/spatial_nd.h"

namespace kiln::graph {
namespace {

using Ints = std::vector<int64_t>;
using AttrMap = std::map<std::string, Attr, std::less<>>;

Node make_node(std::string_view op, AttrMap attrs, size_t outputs = 1) {
  Node n;
  n.op = ops::find_op(op);
  EXPECT_NE(n.op, nullptr) << op;
  n.name = std::string(op) + "_node";
  n.attrs = std::move(attrs);
  static std::vector<Value> values(4);  // kernels only count a node's outputs
  for (size_t k = 0; k < outputs; ++k) n.outputs.push_back(&values[k]);
  return n;
}

std::vector<Tensor> run(const Node& n, const std::vector<Tensor>& inputs) {
  KernelFn fn = kernel_table().find(n.op_name());
  EXPECT_NE(fn, nullptr) << n.op_name();
  return fn(n, inputs);
}

Tensor random_tensor(const Shape& shape, uint32_t seed, DType dtype = DType::f32) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<double> v(static_cast<size_t>(numel(shape)));
  for (double& e : v) e = dist(gen);
  Tensor t = Tensor::from_vector<double>(v, shape);
  return dtype == DType::f64 ? t : to_dtype_raw(t, dtype);
}

// Row-major offset of multi-index idx in shape.
int64_t offset(const Shape& shape, const Ints& idx) {
  int64_t o = 0;
  for (size_t i = 0; i < shape.size(); ++i) o = o * shape[i] + idx[i];
  return o;
}

// Calls fn for every multi-index of shape in row-major order.
void for_each_index(const Shape& shape, const std::function<void(const Ints&)>& fn) {
  if (numel(shape) == 0) return;
  Ints idx(shape.size(), 0);
  while (true) {
    fn(idx);
    int64_t d = static_cast<int64_t>(shape.size()) - 1;
    while (d >= 0 && ++idx[static_cast<size_t>(d)] == shape[static_cast<size_t>(d)]) idx[static_cast<size_t>(d--)] = 0;
    if (d < 0) return;
  }
}

// The spatial geometry of a reference problem, spelled out per dim.
struct Win {
  Ints k, s, d, pb, pe;
};

int64_t out_len(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe, bool ceil_mode) {
  const int64_t span = (k - 1) * d + 1;
  double q = static_cast<double>(in + pb + pe - span) / static_cast<double>(s);
  int64_t out = static_cast<int64_t>(ceil_mode ? std::ceil(q) : std::floor(q)) + 1;
  if (ceil_mode && (out - 1) * s >= in + pb) --out;  // the last window must start inside
  return out;
}

// y[n, m, o] = b[m] + sum_{c in group, t} x[n, c, o*s - pb + t*d] * w[m, c', t]
std::vector<double> conv_ref(const Tensor& x, const Tensor& w, const Tensor& b, const Win& wn, int64_t group,
                             Shape& out_shape) {
  const Shape xs = x.shape(), ws = w.shape();
  const size_t nd = xs.size() - 2;
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>();
  std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>(static_cast<size_t>(ws[0]), 0.0);
  out_shape = {xs[0], ws[0]};
  for (size_t i = 0; i < nd; ++i)
    out_shape.push_back(out_len(xs[2 + i], ws[2 + i], wn.s[i], wn.d[i], wn.pb[i], wn.pe[i], false));
  const int64_t Cg = ws[1], Mg = ws[0] / group;
  std::vector<double> y(static_cast<size_t>(numel(out_shape)));
  Shape ks(ws.begin() + 2, ws.end());
  for_each_index(out_shape, [&](const Ints& o) {
    double acc = bv[static_cast<size_t>(o[1])];
    const int64_t g = o[1] / Mg;
    for (int64_t cg = 0; cg < Cg; ++cg)
      for_each_index(ks, [&](const Ints& t) {
        Ints xi{o[0], g * Cg + cg};
        for (size_t i = 0; i < nd; ++i) {
          int64_t p = o[2 + i] * wn.s[i] - wn.pb[i] + t[i] * wn.d[i];
          if (p < 0 || p >= xs[2 + i]) return;
          xi.push_back(p);
        }
        Ints wi{o[1], cg};
        wi.insert(wi.end(), t.begin(), t.end());
        acc += xv[static_cast<size_t>(offset(xs, xi))] * wv[static_cast<size_t>(offset(ws, wi))];
      });
    y[static_cast<size_t>(offset(out_shape, o))] = acc;
  });
  return y;
}

// ONNX ConvTranspose as a scatter: y[n, g*Mg + m, i*s - pb + t*d] += x[n, c, i] * w[c, m, t].
std::vector<double> conv_transpose_ref(const Tensor& x, const Tensor& w, const Tensor& b, const Win& wn,
                                       const Ints& outpad, int64_t group, Shape& out_shape) {
  const Shape xs = x.shape(), ws = w.shape();
  const size_t nd = xs.size() - 2;
  const int64_t Cg = xs[1] / group, Mg = ws[1];
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>();
  out_shape = {xs[0], Mg * group};
  for (size_t i = 0; i < nd; ++i)
    out_shape.push_back(wn.s[i] * (xs[2 + i] - 1) + outpad[i] + (ws[2 + i] - 1) * wn.d[i] + 1 - wn.pb[i] - wn.pe[i]);
  std::vector<double> y(static_cast<size_t>(numel(out_shape)), 0.0);
  if (b.defined()) {
    std::vector<double> bv = b.to_vector<double>();
    for_each_index(out_shape, [&](const Ints& o) { y[static_cast<size_t>(offset(out_shape, o))] = bv[static_cast<size_t>(o[1])]; });
  }
  Shape ks(ws.begin() + 2, ws.end());
  for_each_index(xs, [&](const Ints& xi) {
    const int64_t g = xi[1] / Cg;
    for (int64_t m = 0; m < Mg; ++m)
      for_each_index(ks, [&](const Ints& t) {
        Ints yi{xi[0], g * Mg + m};
        for (size_t i = 0; i < nd; ++i) {
          int64_t p = xi[2 + i] * wn.s[i] - wn.pb[i] + t[i] * wn.d[i];
          if (p < 0 || p >= out_shape[2 + i]) return;
          yi.push_back(p);
        }
        Ints wi{xi[1], m};
        wi.insert(wi.end(), t.begin(), t.end());
        y[static_cast<size_t>(offset(out_shape, yi))] +=
            xv[static_cast<size_t>(offset(xs, xi))] * wv[static_cast<size_t>(offset(ws, wi))];
      });
  });
  return y;
}

// Max and avg pooling; indices per ONNX (flattened over N, C and the spatial dims, the spatial
// part column-major when storage_order = 1).
struct PoolRef {
  Shape shape;
  std::vector<double> max, avg;
  std::vector<int64_t> idx;
};

PoolRef pool_ref(const Tensor& x, const Win& wn, bool ceil_mode, bool count_include_pad, int64_t storage_order) {
  const Shape xs = x.shape();
  const size_t nd = xs.size() - 2;
  std::vector<double> xv = x.to_vector<double>();
  PoolRef r;
  r.shape = {xs[0], xs[1]};
  for (size_t i = 0; i < nd; ++i)
    r.shape.push_back(out_len(xs[2 + i], wn.k[i], wn.s[i], wn.d[i], wn.pb[i], wn.pe[i], ceil_mode));
  Shape ks = wn.k;
  for_each_index(r.shape, [&](const Ints& o) {
    double best = -std::numeric_limits<double>::infinity(), sum = 0.0;
    int64_t best_at = -1, count = 0;
    for_each_index(ks, [&](const Ints& t) {
      Ints xi{o[0], o[1]};
      bool in = true, in_padded = true;
      for (size_t i = 0; i < nd; ++i) {
        int64_t p = o[2 + i] * wn.s[i] - wn.pb[i] + t[i] * wn.d[i];
        in = in && p >= 0 && p < xs[2 + i];
        in_padded = in_padded && p >= -wn.pb[i] && p < xs[2 + i] + wn.pe[i];
        xi.push_back(p);
      }
      if (count_include_pad ? in_padded : in) ++count;
      if (!in) return;
      double v = xv[static_cast<size_t>(offset(xs, xi))];
      sum += v;
      if (v > best) {
        best = v;
        int64_t spatial = 0;
        if (storage_order == 0) {
          for (size_t i = 0; i < nd; ++i) spatial = spatial * xs[2 + i] + xi[2 + i];
        } else {
          for (size_t i = nd; i-- > 0;) spatial = spatial * xs[2 + i] + xi[2 + i];
        }
        int64_t plane = 1;
        for (size_t i = 0; i < nd; ++i) plane *= xs[2 + i];
        best_at = (o[0] * xs[1] + o[1]) * plane + spatial;
      }
    });
    r.max.push_back(best);
    r.avg.push_back(sum / static_cast<double>(count));
    r.idx.push_back(best_at);
  });
  return r;
}

void expect_near_all(const Tensor& got, const Shape& shape, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.shape(), shape);
  std::vector<double> g = got.to_vector<double>();
  ASSERT_EQ(g.size(), want.size());
  for (size_t i = 0; i < g.size(); ++i) ASSERT_NEAR(g[i], want[i], tol) << "element " << i;
}

AttrMap window_attrs(const Win& wn, bool with_kernel) {
  Ints pads = wn.pb;
  pads.insert(pads.end(), wn.pe.begin(), wn.pe.end());
  AttrMap a{{"strides", wn.s}, {"dilations", wn.d}, {"pads", pads}};
  if (with_kernel) a["kernel_shape"] = wn.k;
  return a;
}

// ---------------------------------------------------------------- conv_nd

TEST(SpatialNd, Conv3dGroupsStridesDilationsAsymmetricPads) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = random_tensor({2, 4, 5, 6, 7}, 1, dt), w = random_tensor({6, 2, 2, 3, 2}, 2, dt);
    Tensor b = random_tensor({6}, 3, dt);
    Win wn{{2, 3, 2}, {1, 2, 2}, {2, 1, 2}, {1, 0, 2}, {0, 2, 1}};
    AttrMap a = window_attrs(wn, true);
    a["group"] = int64_t{2};
    Shape shape;
    std::vector<double> want = conv_ref(x, w, b, wn, 2, shape);
    expect_near_all(run(make_node("conv_nd", a), {x, w, b}).at(0), shape, want, dt == DType::f32 ? 1e-4 : 1e-12);
    a.erase("group");  // group 1 with matching weight; no bias
    Tensor w1 = random_tensor({3, 4, 2, 3, 2}, 4, dt);
    want = conv_ref(x, w1, Tensor(), wn, 1, shape);
    expect_near_all(run(make_node("conv_nd", a), {x, w1}).at(0), shape, want, dt == DType::f32 ? 1e-4 : 1e-12);
  }
}

TEST(SpatialNd, Conv1dAnd2dAndDepthwise) {
  Tensor x1 = random_tensor({2, 3, 11}, 5), w1 = random_tensor({4, 3, 3}, 6);
  Win wn1{{3}, {2}, {2}, {1}, {3}};
  Shape shape;
  std::vector<double> want = conv_ref(x1, w1, Tensor(), wn1, 1, shape);
  expect_near_all(run(make_node("conv_nd", window_attrs(wn1, false)), {x1, w1}).at(0), shape, want, 1e-5);

  Tensor x2 = random_tensor({1, 3, 6, 5}, 7), w2 = random_tensor({3, 1, 3, 2}, 8), b2 = random_tensor({3}, 9);
  Win wn2{{3, 2}, {1, 1}, {1, 2}, {1, 1}, {1, 0}};
  AttrMap a = window_attrs(wn2, true);
  a["group"] = int64_t{3};  // depthwise
  want = conv_ref(x2, w2, b2, wn2, 3, shape);
  expect_near_all(run(make_node("conv_nd", a), {x2, w2, b2}).at(0), shape, want, 1e-5);
}

TEST(SpatialNd, ConvAutoPadSameAndValid) {
  Tensor x = random_tensor({1, 2, 5, 7, 4}, 10), w = random_tensor({3, 2, 3, 2, 3}, 11);
  // SAME: out = ceil(in / s), total = (out - 1) * s + k - in; UPPER puts the odd cell last.
  // dim 0: in 5, s 2 -> out 3, total 2 -> (1, 1); dim 1: in 7, s 1, k 2 -> total 1 -> UPPER (0, 1), LOWER (1, 0);
  // dim 2: in 4, s 2, k 3 -> out 2, total 1 -> UPPER (0, 1), LOWER (1, 0).
  Win upper{{3, 2, 3}, {2, 1, 2}, {1, 1, 1}, {1, 0, 0}, {1, 1, 1}};
  Win lower{{3, 2, 3}, {2, 1, 2}, {1, 1, 1}, {1, 1, 1}, {1, 0, 0}};
  Shape shape;
  for (auto [mode, wn] : {std::pair{"SAME_UPPER", upper}, std::pair{"SAME_LOWER", lower}}) {
    std::vector<double> want = conv_ref(x, w, Tensor(), wn, 1, shape);
    EXPECT_EQ(shape, (Shape{1, 3, 3, 7, 2}));
    AttrMap a{{"strides", wn.s}, {"auto_pad", std::string(mode)}, {"pads", Ints{9, 9, 9, 9, 9, 9}}};
    expect_near_all(run(make_node("conv_nd", a), {x, w}).at(0), shape, want, 1e-5);
  }
  Win valid{{3, 2, 3}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {0, 0, 0}};
  std::vector<double> want = conv_ref(x, w, Tensor(), valid, 1, shape);
  expect_near_all(run(make_node("conv_nd", {{"auto_pad", std::string("VALID")}}), {x, w}).at(0), shape, want, 1e-5);
}

TEST(SpatialNd, ConvRejectsBadShapes) {
  Tensor x = random_tensor({1, 4, 3, 3, 3}, 12);
  EXPECT_THROW(run(make_node("conv_nd", {{"group", int64_t{3}}}), {x, random_tensor({3, 2, 1, 1, 1}, 13)}), Error);
  EXPECT_THROW(run(make_node("conv_nd", {{"kernel_shape", Ints{2, 2, 2}}}), {x, random_tensor({2, 4, 1, 1, 1}, 13)}),
               Error);
  EXPECT_THROW(run(make_node("conv_nd", {}), {x, random_tensor({2, 4, 4, 1, 1}, 13)}), Error);  // window too large
  EXPECT_THROW(run(make_node("conv_nd", {{"auto_pad", std::string("SAME")}}), {x, random_tensor({2, 4, 1, 1, 1}, 13)}),
               Error);
}

// ---------------------------------------------------------------- conv_transpose_nd

TEST(SpatialNd, ConvTranspose3dStridesPadsOutputPaddingGroupsDilations) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = random_tensor({2, 4, 3, 4, 2}, 20, dt), w = random_tensor({4, 3, 2, 3, 2}, 21, dt);
    Tensor b = random_tensor({6}, 22, dt);
    Win wn{{2, 3, 2}, {2, 1, 3}, {1, 2, 2}, {1, 0, 2}, {0, 1, 1}};
    Ints outpad{1, 0, 2};
    AttrMap a = window_attrs(wn, true);
    a["group"] = int64_t{2};
    a["output_padding"] = outpad;
    Shape shape;
    std::vector<double> want = conv_transpose_ref(x, w, b, wn, outpad, 2, shape);
    expect_near_all(run(make_node("conv_transpose_nd", a), {x, w, b}).at(0), shape, want,
                    dt == DType::f32 ? 1e-4 : 1e-12);
  }
}

TEST(SpatialNd, ConvTransposeOutputShapeAndSameUpper) {
  // The ONNX test model's shapes: x (1, 1, 3, 4, 5), w (1, 2, 3, 3, 3), no attributes.
  Tensor x = random_tensor({1, 1, 3, 4, 5}, 23), w = random_tensor({1, 2, 3, 3, 3}, 24);
  Win plain{{3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {0, 0, 0}};
  Shape shape;
  std::vector<double> want = conv_transpose_ref(x, w, Tensor(), plain, {0, 0, 0}, 1, shape);
  EXPECT_EQ(shape, (Shape{1, 2, 5, 6, 7}));
  expect_near_all(run(make_node("conv_transpose_nd", {}), {x, w}).at(0), shape, want, 1e-5);
  // output_shape (6, 8, 9) with strides 2: full = 2*(in-1) + 3 = (7, 9, 11), total = (1, 1, 2),
  // NOTSET puts floor(total/2) last: pads begin (1, 1, 1), end (0, 0, 1).
  Win ws{{3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}, {0, 0, 1}};
  want = conv_transpose_ref(x, w, Tensor(), ws, {0, 0, 0}, 1, shape);
  EXPECT_EQ(shape, (Shape{1, 2, 6, 8, 9}));
  expect_near_all(run(make_node("conv_transpose_nd", {{"strides", Ints{2, 2, 2}}, {"output_shape", Ints{6, 8, 9}}}),
                      {x, w}).at(0), shape, want, 1e-5);
  // SAME_UPPER: output = in * stride = (6, 8, 10), total = (1, 1, 1), begin = floor(total/2) = 0.
  Win su{{3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}};
  want = conv_transpose_ref(x, w, Tensor(), su, {0, 0, 0}, 1, shape);
  EXPECT_EQ(shape, (Shape{1, 2, 6, 8, 10}));
  expect_near_all(
      run(make_node("conv_transpose_nd", {{"strides", Ints{2, 2, 2}}, {"auto_pad", std::string("SAME_UPPER")}}),
          {x, w}).at(0), shape, want, 1e-5);
}

// ---------------------------------------------------------------- max_pool_nd

void check_max_pool(const Tensor& x, const Win& wn, bool ceil_mode, int64_t storage_order) {
  AttrMap a = window_attrs(wn, true);
  a["ceil_mode"] = int64_t{ceil_mode};
  a["storage_order"] = storage_order;
  PoolRef r = pool_ref(x, wn, ceil_mode, false, storage_order);
  std::vector<Tensor> out = run(make_node("max_pool_nd", a, 2), {x});
  ASSERT_EQ(out.size(), 2u);
  expect_near_all(out[0], r.shape, r.max, 0.0);
  ASSERT_EQ(out[1].dtype(), DType::i64);
  ASSERT_EQ(out[1].shape(), r.shape);
  EXPECT_EQ(out[1].to_vector<int64_t>(), r.idx);
  std::vector<Tensor> only = run(make_node("max_pool_nd", a, 1), {x});
  ASSERT_EQ(only.size(), 1u);
  expect_near_all(only[0], r.shape, r.max, 0.0);
}

TEST(SpatialNd, MaxPool3dDilationsCeilModePadsIndicesBothOrders) {
  Tensor x = random_tensor({2, 3, 6, 7, 5}, 30);
  Win wn{{2, 3, 2}, {2, 2, 1}, {2, 1, 2}, {1, 0, 1}, {0, 1, 1}};
  for (bool ceil_mode : {false, true})
    for (int64_t order : {0, 1}) check_max_pool(x, wn, ceil_mode, order);
  check_max_pool(random_tensor({1, 2, 9}, 31), Win{{3}, {2}, {3}, {2}, {1}}, true, 1);  // 1-d dilated
  check_max_pool(random_tensor({2, 2, 7, 6}, 32), Win{{3, 2}, {2, 3}, {2, 2}, {1, 1}, {1, 0}}, true, 1);
}

TEST(SpatialNd, MaxPoolOnnxSpecExamples) {
  std::vector<float> v(25);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i + 1);
  Tensor x = Tensor::from_vector<float>(v, {1, 1, 5, 5});
  // maxpool_with_argmax_2d_precomputed_pads: kernel 5, pads 2.
  std::vector<Tensor> out = run(
      make_node("max_pool_nd", {{"kernel_shape", Ints{5, 5}}, {"pads", Ints{2, 2, 2, 2}}}, 2), {x});
  EXPECT_EQ(out[0].to_vector<double>(), (std::vector<double>{13, 14, 15, 15, 15, 18, 19, 20, 20, 20, 23, 24, 25, 25,
                                                             25, 23, 24, 25, 25, 25, 23, 24, 25, 25, 25}));
  EXPECT_EQ(out[1].to_vector<int64_t>(), (std::vector<int64_t>{12, 13, 14, 14, 14, 17, 18, 19, 19, 19, 22, 23, 24, 24,
                                                               24, 22, 23, 24, 24, 24, 22, 23, 24, 24, 24}));
  // maxpool_with_argmax_2d_precomputed_strides: kernel 2, strides 2, storage_order 1 (column-major).
  out = run(make_node("max_pool_nd",
                      {{"kernel_shape", Ints{2, 2}}, {"strides", Ints{2, 2}}, {"storage_order", int64_t{1}}}, 2),
            {x});
  EXPECT_EQ(out[0].to_vector<double>(), (std::vector<double>{7, 9, 17, 19}));
  EXPECT_EQ(out[1].to_vector<int64_t>(), (std::vector<int64_t>{6, 16, 8, 18}));
  // maxpool_2d_dilations: 4x4 of 1..16, kernel 2, dilations 2 -> [[11, 12], [15, 16]].
  std::vector<float> v16(v.begin(), v.begin() + 16);
  out = run(make_node("max_pool_nd", {{"kernel_shape", Ints{2, 2}}, {"dilations", Ints{2, 2}}}),
            {Tensor::from_vector<float>(v16, {1, 1, 4, 4})});
  EXPECT_EQ(out[0].to_vector<double>(), (std::vector<double>{11, 12, 15, 16}));
}

TEST(SpatialNd, MaxPoolSameUpperAndIntegers) {
  Tensor x = random_tensor({1, 2, 5, 4, 3}, 33);
  // SAME_UPPER, k 2, s 2: dim in 5 -> out 3, total 1 -> (0, 1); in 4 -> total 0; in 3 -> out 2, total 1.
  Win wn{{2, 2, 2}, {2, 2, 2}, {1, 1, 1}, {0, 0, 0}, {1, 0, 1}};
  PoolRef r = pool_ref(x, wn, false, false, 0);
  AttrMap a{{"kernel_shape", wn.k}, {"strides", wn.s}, {"auto_pad", std::string("SAME_UPPER")}};
  expect_near_all(run(make_node("max_pool_nd", a), {x}).at(0), r.shape, r.max, 0.0);
  Tensor xi = Tensor::from_vector<int8_t>({-5, 3, 7, -2, 0, 9}, {1, 1, 6});
  Tensor y = run(make_node("max_pool_nd", {{"kernel_shape", Ints{2}}, {"strides", Ints{2}}}), {xi}).at(0);
  EXPECT_EQ(y.dtype(), DType::i8);
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{3, 7, 9}));
}

// ---------------------------------------------------------------- avg_pool_nd

TEST(SpatialNd, AvgPool3dPadsCeilModeCountIncludePad) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = random_tensor({2, 3, 7, 6, 5}, 40, dt);
    Win wn{{3, 2, 3}, {2, 2, 2}, {1, 1, 1}, {1, 0, 1}, {1, 1, 0}};
    for (bool ceil_mode : {false, true})
      for (bool count_pad : {false, true}) {
        AttrMap a = window_attrs(wn, true);
        a["ceil_mode"] = int64_t{ceil_mode};
        a["count_include_pad"] = int64_t{count_pad};
        PoolRef r = pool_ref(x, wn, ceil_mode, count_pad, 0);
        expect_near_all(run(make_node("avg_pool_nd", a), {x}).at(0), r.shape, r.avg, dt == DType::f32 ? 1e-6 : 1e-12);
      }
  }
}

TEST(SpatialNd, AvgPoolSameLowerDilatedAnd1d) {
  Tensor x = random_tensor({1, 2, 5, 7}, 41);
  // SAME_LOWER, k 3, s 2: in 5 -> out 3, total 2 -> (1, 1); in 7 -> out 4, total 2 -> (1, 1).
  Win wn{{3, 3}, {2, 2}, {1, 1}, {1, 1}, {1, 1}};
  PoolRef r = pool_ref(x, wn, false, false, 0);
  AttrMap a{{"kernel_shape", wn.k}, {"strides", wn.s}, {"auto_pad", std::string("SAME_LOWER")}};
  expect_near_all(run(make_node("avg_pool_nd", a), {x}).at(0), r.shape, r.avg, 1e-6);
  Win d1{{3}, {1}, {2}, {2}, {1}};
  Tensor x1 = random_tensor({2, 1, 8}, 42);
  r = pool_ref(x1, d1, false, true, 0);
  AttrMap a1 = window_attrs(d1, true);
  a1["count_include_pad"] = int64_t{1};
  expect_near_all(run(make_node("avg_pool_nd", a1), {x1}).at(0), r.shape, r.avg, 1e-6);
}

TEST(SpatialNd, HalfPrecisionComputesInF32) {
  Tensor x = random_tensor({1, 2, 4, 5, 3}, 44, DType::f16), w = random_tensor({2, 2, 2, 2, 2}, 45, DType::f16);
  Win wn{{2, 2, 2}, {1, 2, 1}, {1, 1, 1}, {1, 0, 0}, {0, 1, 1}};
  AttrMap a = window_attrs(wn, true);
  PoolRef r = pool_ref(x, wn, false, false, 0);
  Tensor avg = run(make_node("avg_pool_nd", a), {x}).at(0);
  EXPECT_EQ(avg.dtype(), DType::f16);
  expect_near_all(avg, r.shape, r.avg, 2e-3);
  std::vector<Tensor> mx = run(make_node("max_pool_nd", a, 2), {x});
  expect_near_all(mx[0], r.shape, r.max, 0.0);
  EXPECT_EQ(mx[1].to_vector<int64_t>(), r.idx);
  Shape shape;
  std::vector<double> want = conv_ref(x, w, Tensor(), wn, 1, shape);
  Tensor y = run(make_node("conv_nd", window_attrs(wn, false)), {x, w}).at(0);
  EXPECT_EQ(y.dtype(), DType::f16);
  expect_near_all(y, shape, want, 1e-2);
}

TEST(SpatialNd, PoolingRejectsBadAttributes) {
  Tensor x = random_tensor({1, 1, 4, 4, 4}, 43);
  EXPECT_THROW(run(make_node("max_pool_nd", {}), {x}), Error);                                  // no kernel_shape
  EXPECT_THROW(run(make_node("avg_pool_nd", {{"kernel_shape", Ints{2, 2}}}), {x}), Error);    // wrong rank
  EXPECT_THROW(run(make_node("max_pool_nd", {{"kernel_shape", Ints{5, 1, 1}}}), {x}), Error); // window too large
  EXPECT_THROW(run(make_node("max_pool_nd", {{"kernel_shape", Ints{2, 2, 2}}, {"storage_order", int64_t{2}}}), {x}),
               Error);
}

}  // namespace
}  // namespace kiln::graph
