// Tests for ops/indexing_extra.h: each op against the examples of its ONNX specification and a
// plain-loop reference written here (multi-index arithmetic on doubles), in every dtype the op
// takes, on strided and large (threaded) inputs, and bad inputs rejected by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "kiln/core/rng.h"
#include "kiln/ops/indexing_extra.h"
#include "kiln/ops/ops.h"

using namespace kiln;
using ops::ScatterReduction;

namespace {

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

Tensor make(const std::vector<double>& v, const Shape& s, DType dt = DType::f32) {
  return to_dtype_raw(Tensor::from_vector<double>(v, s), dt);
}
Tensor i64(const std::vector<int64_t>& v, const Shape& s) { return Tensor::from_vector<int64_t>(v, s); }
Tensor i64(const std::vector<int64_t>& v) { return Tensor::from_vector<int64_t>(v); }

void expect_tensor(const Tensor& got, const Shape& shape, const std::vector<double>& want, double tol = 0.0) {
  ASSERT_EQ(got.shape(), shape);
  std::vector<double> g = vals(got);
  ASSERT_EQ(g.size(), want.size());
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(want[i])) EXPECT_TRUE(std::isnan(g[i])) << "at " << i;
    else EXPECT_NEAR(g[i], want[i], tol * std::max(1.0, std::abs(want[i]))) << "at " << i;
  }
}

template <typename E, typename F>
void expect_error(F f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

std::vector<int64_t> unravel(int64_t flat, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = flat % s[d];
    flat /= s[d];
  }
  return idx;
}

int64_t ravel(const std::vector<int64_t>& idx, const Shape& s) {
  int64_t flat = 0;
  for (size_t d = 0; d < s.size(); ++d) flat = flat * s[d] + idx[d];
  return flat;
}

// Integer-valued random data in [lo, hi] (exact in every dtype, so references compare exactly).
std::vector<double> small_ints(int64_t n, int lo, int hi, Generator& g) {
  std::vector<double> v = vals(uniform({n}, lo, hi + 1, g, DType::f64));
  for (double& x : v) x = std::min<double>(hi, std::floor(x));
  return v;
}

double ref_combine(double old, double upd, ScatterReduction r, DType dt) {
  if (dt == DType::b8) {
    if (r == ScatterReduction::none) return upd;
    bool add_like = r == ScatterReduction::add || r == ScatterReduction::max;
    return add_like ? double(old != 0 || upd != 0) : double(old != 0 && upd != 0);
  }
  switch (r) {
    case ScatterReduction::none: return upd;
    case ScatterReduction::add: return old + upd;
    case ScatterReduction::mul: return old * upd;
    case ScatterReduction::max: return std::max(old, upd);
    case ScatterReduction::min: return std::min(old, upd);
  }
  return 0;
}

const std::vector<DType> kAllDtypes = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i8,
                                       DType::u8,  DType::i32, DType::i64, DType::b8};
const std::vector<ScatterReduction> kReductions = {ScatterReduction::none, ScatterReduction::add,
                                                   ScatterReduction::mul, ScatterReduction::max,
                                                   ScatterReduction::min};

// ---------------------------------------------------------------- scatter_elements

TEST(ScatterElements, OnnxExamples) {
  // Without axis (axis 0).
  Tensor data = Tensor::zeros({3, 3});
  Tensor idx = i64({1, 0, 2, 0, 2, 1}, {2, 3});
  Tensor upd = make({1.0, 1.1, 1.2, 2.0, 2.1, 2.2}, {2, 3});
  expect_tensor(ops::scatter_elements(data, idx, upd), {3, 3}, {2.0, 1.1, 0.0, 1.0, 0.0, 2.2, 0.0, 2.1, 1.2}, 1e-7);
  // With axis 1; negative indices; duplicates with add.
  Tensor row = make({1, 2, 3, 4, 5}, {1, 5});
  expect_tensor(ops::scatter_elements(row, i64({1, 3}, {1, 2}), make({1.1, 2.1}, {1, 2}), 1), {1, 5},
                {1, 1.1, 3, 2.1, 5}, 1e-7);
  expect_tensor(ops::scatter_elements(row, i64({1, -3}, {1, 2}), make({1.1, 2.1}, {1, 2}), 1), {1, 5},
                {1, 1.1, 2.1, 4, 5}, 1e-7);
  expect_tensor(ops::scatter_elements(row, i64({1, 1}, {1, 2}), make({1.1, 2.1}, {1, 2}), 1, ScatterReduction::add),
                {1, 5}, {1, 5.2, 3, 4, 5}, 1e-6);
  expect_tensor(ops::scatter_elements(row, i64({1, 1}, {1, 2}), make({1.1, 2.1}, {1, 2}), 1, ScatterReduction::mul),
                {1, 5}, {1, 2 * 1.1 * 2.1, 3, 4, 5}, 1e-6);
  // The input is not modified.
  expect_tensor(row, {1, 5}, {1, 2, 3, 4, 5});
}

TEST(ScatterElements, EveryAxisReductionAndDtypeAgainstLoop) {
  Generator g(11);
  const Shape ds{4, 3, 5};
  for (DType dt : kAllDtypes)
    for (int64_t axis = -3; axis < 3; ++axis)
      for (ScatterReduction r : kReductions) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " axis " << axis << " r " << int(r));
        const int64_t ax = axis < 0 ? axis + 3 : axis;
        Shape is{3, 2, 4};  // no larger than data outside the axis
        is[ax] = 5;         // more updates than most slots: duplicates (few enough that i8 products fit)
        std::vector<double> dv = small_ints(numel(ds), dt == DType::b8 ? 0 : 1, dt == DType::b8 ? 1 : 2, g);
        std::vector<double> uv = small_ints(numel(is), dt == DType::b8 ? 0 : 1, dt == DType::b8 ? 1 : 2, g);
        std::vector<double> iv = small_ints(numel(is), -ds[ax], ds[ax] - 1, g);
        std::vector<int64_t> ii(iv.begin(), iv.end());
        // Data given as a transposed view, to check strided reads.
        Tensor data = ops::transpose(make(dv, {ds[0], ds[2], ds[1]}, dt), 1, 2);
        std::vector<double> dlogical = vals(data);
        Tensor idx = to_dtype_raw(i64(ii, is), axis % 2 == 0 ? DType::i64 : DType::i32);
        Tensor out = ops::scatter_elements(data, idx, make(uv, is, dt), axis, r);
        EXPECT_EQ(out.dtype(), dt);
        std::vector<double> want = dlogical;
        for (int64_t p = 0; p < numel(is); ++p) {
          std::vector<int64_t> at = unravel(p, is);
          int64_t v = ii[p];
          at[ax] = v < 0 ? v + ds[ax] : v;
          double& w = want[ravel(at, ds)];
          w = ref_combine(w, uv[p], r, dt);
        }
        expect_tensor(out, ds, want);
      }
}

TEST(ScatterElements, LargeThreadedWithDuplicatesIsDeterministic) {
  Generator g(12);
  const Shape ds{300, 200}, is{300, 500};
  std::vector<double> dv = vals(uniform(ds, -1, 1, g, DType::f64)), uv = vals(uniform(is, -1, 1, g, DType::f64));
  std::vector<double> iv = small_ints(numel(is), 0, 199, g);
  std::vector<int64_t> ii(iv.begin(), iv.end());
  for (ScatterReduction r : {ScatterReduction::none, ScatterReduction::add}) {
    Tensor out = ops::scatter_elements(make(dv, ds, DType::f64), i64(ii, is), make(uv, is, DType::f64), 1, r);
    std::vector<double> want = dv;
    for (int64_t p = 0; p < numel(is); ++p) {  // row-major order: the last duplicate wins under none
      double& w = want[(p / 500) * 200 + ii[p]];
      w = ref_combine(w, uv[p], r, DType::f64);
    }
    expect_tensor(out, ds, want, 1e-12);
  }
}

TEST(ScatterElements, BadInputs) {
  Tensor data = Tensor::zeros({3, 3});
  expect_error<IndexError>([&] { ops::scatter_elements(data, i64({3}, {1, 1}), Tensor::ones({1, 1})); },
                           "scatter_elements: index 3 is out of range");
  expect_error<IndexError>([&] { ops::scatter_elements(data, i64({-4}, {1, 1}), Tensor::ones({1, 1})); },
                           "index -4");
  expect_error<ValueError>([&] { ops::scatter_elements(data, i64({0, 1}, {1, 2}), Tensor::ones({2, 1})); },
                           "updates must have shape [1, 2]");
  expect_error<TypeError>([&] { ops::scatter_elements(data, Tensor::zeros({1, 1}), Tensor::ones({1, 1})); },
                          "indices must be an i64 or i32");
  expect_error<TypeError>(
      [&] { ops::scatter_elements(data, i64({0}, {1, 1}), Tensor::ones({1, 1}, DType::f64)); }, "data's dtype");
  expect_error<ValueError>([&] { ops::scatter_elements(data, i64({0}, {1}), Tensor::ones({1})); }, "rank of data");
  expect_error<ValueError>([&] { ops::scatter_elements(data, i64({0, 0, 0, 0}, {4, 1}), Tensor::ones({4, 1}), 1); },
                           "larger than data");
  expect_error<ValueError>([] { ops::scatter_reduction_from_name("sum"); }, "unknown reduction 'sum'");
}

// ---------------------------------------------------------------- scatter_nd

TEST(ScatterNd, OnnxExamples) {
  Tensor d1 = make({1, 2, 3, 4, 5, 6, 7, 8}, {8});
  expect_tensor(ops::scatter_nd(d1, i64({4, 3, 1, 7}, {4, 1}), make({9, 10, 11, 12}, {4})), {8},
                {1, 11, 3, 10, 9, 6, 7, 12});
  // Example 2: two 4x4 slices of a 4x4x4 tensor.
  std::vector<double> block = {1, 2, 3, 4, 5, 6, 7, 8, 8, 7, 6, 5, 4, 3, 2, 1};
  std::vector<double> dv;
  for (int i = 0; i < 4; ++i) dv.insert(dv.end(), block.begin(), block.end());
  std::vector<double> uv(32);
  for (int i = 0; i < 16; ++i) uv[i] = 5 + (i / 4);       // 5,5,5,5,6,6,6,6,...
  for (int i = 0; i < 16; ++i) uv[16 + i] = 1 + (i / 4);  // 1,1,1,1,2,2,2,2,...
  Tensor out = ops::scatter_nd(make(dv, {4, 4, 4}), i64({0, 2}, {2, 1}), make(uv, {2, 4, 4}));
  std::vector<double> want = dv;
  for (int i = 0; i < 16; ++i) {
    want[i] = uv[i];
    want[32 + i] = uv[16 + i];
  }
  expect_tensor(out, {4, 4, 4}, want);
  // reduction add and mul with a duplicate index (ONNX's test_scatternd_add / _multiply).
  Tensor dup = i64({0, 0}, {2, 1});
  Tensor add = ops::scatter_nd(make(dv, {4, 4, 4}), dup, make(uv, {2, 4, 4}), ScatterReduction::add);
  Tensor mul = ops::scatter_nd(make(dv, {4, 4, 4}), dup, make(uv, {2, 4, 4}), ScatterReduction::mul);
  std::vector<double> wa = dv, wm = dv;
  for (int i = 0; i < 16; ++i) {
    wa[i] = dv[i] + uv[i] + uv[16 + i];
    wm[i] = dv[i] * uv[i] * uv[16 + i];
  }
  expect_tensor(add, {4, 4, 4}, wa);
  expect_tensor(mul, {4, 4, 4}, wm);
}

TEST(ScatterNd, EveryDepthReductionAndDtypeAgainstLoop) {
  Generator g(21);
  const Shape ds{3, 4, 5};
  for (DType dt : kAllDtypes)
    for (int64_t k = 1; k <= 3; ++k)
      for (ScatterReduction r : kReductions) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " k " << k << " r " << int(r));
        Shape is{2, 2, k};  // 4 rows of k coordinates: some land on one slice
        Shape us{2, 2};
        us.insert(us.end(), ds.begin() + k, ds.end());
        const int64_t rows = 4, S = numel(us) / rows;
        std::vector<int64_t> ii;
        for (int64_t row = 0; row < rows; ++row)
          for (int64_t j = 0; j < k; ++j) {
            int64_t v = static_cast<int64_t>(small_ints(1, 0, static_cast<int>(std::min<int64_t>(ds[j], 2)) - 1, g)[0]);
            ii.push_back(row % 2 ? v - ds[j] : v);  // every other row negative
          }
        std::vector<double> dv = small_ints(numel(ds), dt == DType::b8 ? 0 : 1, dt == DType::b8 ? 1 : 2, g);
        std::vector<double> uv = small_ints(numel(us), dt == DType::b8 ? 0 : 1, dt == DType::b8 ? 1 : 2, g);
        Tensor out = ops::scatter_nd(make(dv, ds, dt), i64(ii, is), make(uv, us, dt), r);
        std::vector<double> want = dv;
        for (int64_t row = 0; row < rows; ++row) {
          std::vector<int64_t> at(3, 0);
          for (int64_t j = 0; j < k; ++j) {
            int64_t v = ii[row * k + j];
            at[j] = v < 0 ? v + ds[j] : v;
          }
          int64_t base = ravel(at, ds);
          for (int64_t c = 0; c < S; ++c) want[base + c] = ref_combine(want[base + c], uv[row * S + c], r, dt);
        }
        expect_tensor(out, ds, want);
      }
}

TEST(ScatterNd, LargeSlicesThreaded) {
  Generator g(22);
  const Shape ds{4, 100000};
  std::vector<double> dv = vals(uniform(ds, -1, 1, g, DType::f64)), uv = vals(uniform({3, 100000}, -1, 1, g, DType::f64));
  Tensor out = ops::scatter_nd(make(dv, ds, DType::f32), i64({2, 0, 2}, {3, 1}), make(uv, {3, 100000}, DType::f32),
                               ScatterReduction::add);
  std::vector<double> o = vals(out);
  for (int64_t c = 0; c < 100000; c += 997) {
    EXPECT_NEAR(o[c], dv[c] + uv[100000 + c], 1e-6);
    EXPECT_NEAR(o[2 * 100000 + c], dv[2 * 100000 + c] + uv[c] + uv[2 * 100000 + c], 1e-6);
    EXPECT_NEAR(o[100000 + c], dv[100000 + c], 1e-7);
  }
}

TEST(ScatterNd, BadInputs) {
  Tensor data = Tensor::zeros({2, 3});
  expect_error<ValueError>([&] { ops::scatter_nd(data, i64({0, 0, 0}, {1, 3}), Tensor::ones({1})); },
                           "last dim of indices [1, 3] must be in [1, 2]");
  expect_error<ValueError>([&] { ops::scatter_nd(data, i64({0}, {1, 1}), Tensor::ones({1, 2})); },
                           "updates must have shape [1, 3]");
  expect_error<IndexError>([&] { ops::scatter_nd(data, i64({0, 3}, {1, 2}), Tensor::ones({1})); },
                           "index 3 is out of range for dimension 1 with size 3");
}

// ---------------------------------------------------------------- gather_nd

TEST(GatherNd, OnnxExamples) {
  Tensor d2 = make({0, 1, 2, 3}, {2, 2}, DType::i32);
  Tensor y = ops::gather_nd(d2, i64({0, 0, 1, 1}, {2, 2}));
  EXPECT_EQ(y.dtype(), DType::i32);
  expect_tensor(y, {2}, {0, 3});
  expect_tensor(ops::gather_nd(d2, i64({1, 0}, {2, 1})), {2, 2}, {2, 3, 0, 1});
  Tensor d3 = make({0, 1, 2, 3, 4, 5, 6, 7}, {2, 2, 2});
  expect_tensor(ops::gather_nd(d3, i64({0, 1, 1, 0}, {2, 2})), {2, 2}, {2, 3, 4, 5});
  expect_tensor(ops::gather_nd(d3, i64({0, 1, 1, 0}, {2, 1, 2})), {2, 1, 2}, {2, 3, 4, 5});
  // batch_dims = 1.
  expect_tensor(ops::gather_nd(d3, i64({1, 0}, {2, 1}), 1), {2, 2}, {2, 3, 4, 5});
  // Negative indices count from the end.
  expect_tensor(ops::gather_nd(d2, i64({-1, -2}, {1, 2})), {1}, {2});
}

TEST(GatherNd, BatchDimsAndDtypesAgainstLoop) {
  Generator g(31);
  const Shape ds{2, 3, 4, 5};
  for (DType dt : kAllDtypes)
    for (int64_t b = 0; b <= 2; ++b)
      for (int64_t k = 1; k <= 4 - b; ++k) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " b " << b << " k " << k);
        Shape is(ds.begin(), ds.begin() + b);
        is.push_back(3);  // three index rows per batch entry
        is.push_back(k);
        const int64_t rows = numel(is) / k;
        std::vector<int64_t> ii;
        for (int64_t row = 0; row < rows; ++row)
          for (int64_t j = 0; j < k; ++j)
            ii.push_back(static_cast<int64_t>(small_ints(1, -static_cast<int>(ds[b + j]), static_cast<int>(ds[b + j]) - 1, g)[0]));
        std::vector<double> dv = small_ints(numel(ds), 0, dt == DType::b8 ? 1 : 100, g);
        Tensor out = ops::gather_nd(make(dv, ds, dt), to_dtype_raw(i64(ii, is), b == 1 ? DType::i32 : DType::i64), b);
        Shape os(is.begin(), is.end() - 1);
        os.insert(os.end(), ds.begin() + b + k, ds.end());
        const int64_t S = numel(Shape(ds.begin() + b + k, ds.end()));
        std::vector<double> want;
        for (int64_t row = 0; row < rows; ++row) {
          std::vector<int64_t> at(4, 0);
          std::vector<int64_t> bi = unravel(row / 3, Shape(ds.begin(), ds.begin() + b));
          for (int64_t d = 0; d < b; ++d) at[d] = bi[d];
          for (int64_t j = 0; j < k; ++j) {
            int64_t v = ii[row * k + j];
            at[b + j] = v < 0 ? v + ds[b + j] : v;
          }
          int64_t base = ravel(at, ds);
          for (int64_t c = 0; c < S; ++c) want.push_back(dv[base + c]);
        }
        EXPECT_EQ(out.dtype(), dt);
        expect_tensor(out, os, want);
      }
}

TEST(GatherNd, BadInputs) {
  Tensor d = Tensor::zeros({2, 3});
  expect_error<ValueError>([&] { ops::gather_nd(d, i64({0, 0}, {2, 1}), 2); }, "batch_dims 2 must be in [0, 2)");
  expect_error<ValueError>([&] { ops::gather_nd(d, i64({0, 0, 0}, {3, 1}), 1); }, "(batch) dims");
  expect_error<ValueError>([&] { ops::gather_nd(d, i64({0, 0, 0}, {1, 3})); }, "must be in [1, 2]");
  expect_error<IndexError>([&] { ops::gather_nd(d, i64({2}, {1, 1})); }, "index 2 is out of range for dimension 0");
}

// ---------------------------------------------------------------- compress

TEST(Compress, OnnxExamples) {
  Tensor x = make({1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor c010 = to_dtype_raw(make({0, 1, 1}, {3}), DType::b8);
  expect_tensor(ops::compress(x, c010, 0), {2, 2}, {3, 4, 5, 6});
  Tensor c01 = to_dtype_raw(make({0, 1}, {2}), DType::b8);
  expect_tensor(ops::compress(x, c01, 1), {3, 1}, {2, 4, 6});
  expect_tensor(ops::compress(x, c01, -1), {3, 1}, {2, 4, 6});
  // No axis: the flattened input; a condition shorter than it drops the tail.
  Tensor c5 = to_dtype_raw(make({0, 1, 0, 0, 1}, {5}), DType::b8);
  expect_tensor(ops::compress(x, c5), {2}, {2, 5});
  // Nothing selected.
  expect_tensor(ops::compress(x, to_dtype_raw(make({0, 0}, {2}), DType::b8), 1), {3, 0}, {});
}

TEST(Compress, MiddleAxisDtypesAndStridedInput) {
  Generator g(41);
  for (DType dt : kAllDtypes) {
    std::vector<double> xv = small_ints(2 * 5 * 3, 0, dt == DType::b8 ? 1 : 50, g);
    Tensor x = ops::transpose(make(xv, {2, 3, 5}, dt), 1, 2);  // (2, 5, 3), strided
    std::vector<double> logical = vals(x);
    Tensor cond = make({1, 0, 1, 1}, {4}, DType::i32);  // any dtype reads as nonzero
    Tensor out = ops::compress(x, cond, 1);
    std::vector<double> want;
    for (int64_t a = 0; a < 2; ++a)
      for (int64_t j : {0, 2, 3})
        for (int64_t c = 0; c < 3; ++c) want.push_back(logical[(a * 5 + j) * 3 + c]);
    EXPECT_EQ(out.dtype(), dt);
    expect_tensor(out, {2, 3, 3}, want);
  }
}

TEST(Compress, BadInputs) {
  Tensor x = Tensor::zeros({3, 2});
  expect_error<ValueError>([&] { ops::compress(x, Tensor::ones({3}, DType::b8), 1); }, "condition has 3 elements");
  expect_error<ValueError>([&] { ops::compress(x, Tensor::ones({1, 1}, DType::b8), 0); }, "condition must be 1-d");
  expect_error<IndexError>([&] { ops::compress(x, Tensor::ones({1}, DType::b8), 2); }, "compress");
}

// ---------------------------------------------------------------- depth_to_space, space_to_depth

TEST(DepthToSpace, OnnxExamples) {
  std::vector<double> xv(48);
  std::iota(xv.begin(), xv.end(), 0.0);
  Tensor x = make(xv, {1, 8, 2, 3});
  expect_tensor(ops::depth_to_space(x, 2), {1, 2, 4, 6},
                {0,  12, 1,  13, 2,  14, 24, 36, 25, 37, 26, 38, 3,  15, 4,  16, 5,  17, 27, 39, 28, 40, 29, 41,
                 6,  18, 7,  19, 8,  20, 30, 42, 31, 43, 32, 44, 9,  21, 10, 22, 11, 23, 33, 45, 34, 46, 35, 47});
  expect_tensor(ops::depth_to_space(x, 2, /*crd=*/true), {1, 2, 4, 6},
                {0,  6,  1,  7,  2,  8,  12, 18, 13, 19, 14, 20, 3,  9,  4,  10, 5,  11, 15, 21, 16, 22, 17, 23,
                 24, 30, 25, 31, 26, 32, 36, 42, 37, 43, 38, 44, 27, 33, 28, 34, 29, 35, 39, 45, 40, 46, 41, 47});
  std::vector<double> sv(24);
  std::iota(sv.begin(), sv.end(), 0.0);
  expect_tensor(ops::space_to_depth(make(sv, {1, 1, 4, 6}), 2), {1, 4, 2, 3},
                {0, 2, 4, 12, 14, 16, 1, 3, 5, 13, 15, 17, 6, 8, 10, 18, 20, 22, 7, 9, 11, 19, 21, 23});
}

TEST(DepthToSpace, BothModesAndSpaceToDepthAgainstLoop) {
  Generator g(51);
  const int64_t N = 2, C = 18, H = 2, W = 4, b = 3, c = C / (b * b);
  for (DType dt : kAllDtypes) {
    std::vector<double> xv = small_ints(N * C * H * W, 0, dt == DType::b8 ? 1 : 60, g);
    Tensor x = make(xv, {N, C, H, W}, dt);
    for (bool crd : {false, true}) {
      Tensor y = ops::depth_to_space(x, b, crd);
      EXPECT_EQ(y.dtype(), dt);
      std::vector<double> want;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t h = 0; h < H * b; ++h)
            for (int64_t w = 0; w < W * b; ++w) {
              int64_t off = (h % b) * b + (w % b);
              int64_t src_c = crd ? ch * b * b + off : off * c + ch;
              want.push_back(xv[((n * C + src_c) * H + h / b) * W + w / b]);
            }
      expect_tensor(y, {N, c, H * b, W * b}, want);
      // space_to_depth inverts DCR depth_to_space.
      if (!crd) expect_tensor(ops::space_to_depth(y, b), {N, C, H, W}, xv);
    }
  }
}

TEST(DepthToSpace, BadInputs) {
  expect_error<ValueError>([] { ops::depth_to_space(Tensor::zeros({1, 6, 2, 2}), 2); }, "multiple of blocksize^2");
  expect_error<ValueError>([] { ops::depth_to_space(Tensor::zeros({6, 2, 2}), 2); }, "(N, C, H, W)");
  expect_error<ValueError>([] { ops::space_to_depth(Tensor::zeros({1, 1, 3, 4}), 2); }, "multiples of blocksize 2");
}

// ---------------------------------------------------------------- reverse_sequence

TEST(ReverseSequence, OnnxExamples) {
  std::vector<double> tv = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
  expect_tensor(ops::reverse_sequence(make(tv, {4, 4}), i64({4, 3, 2, 1}), 1, 0), {4, 4},
                {3, 6, 9, 12, 2, 5, 8, 13, 1, 4, 10, 14, 0, 7, 11, 15});
  std::vector<double> bv = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  expect_tensor(ops::reverse_sequence(make(bv, {4, 4}), i64({1, 2, 3, 4}), 0, 1), {4, 4},
                {0, 1, 2, 3, 5, 4, 6, 7, 10, 9, 8, 11, 15, 14, 13, 12});
}

TEST(ReverseSequence, InnerDimsAndDtypesAgainstLoop) {
  Generator g(61);
  for (DType dt : kAllDtypes)
    for (int64_t batch_axis : {0, 1}) {
      const int64_t time_axis = 1 - batch_axis, T = 5, B = 3;
      Shape s(3, 2);
      s[batch_axis] = B;
      s[time_axis] = T;
      std::vector<double> xv = small_ints(numel(s), 0, dt == DType::b8 ? 1 : 90, g);
      std::vector<int64_t> lens = {5, 0, 3};
      Tensor out = ops::reverse_sequence(make(xv, s, dt), to_dtype_raw(i64(lens), DType::i32), batch_axis, time_axis);
      std::vector<double> want(xv.size());
      for (int64_t p = 0; p < numel(s); ++p) {
        std::vector<int64_t> at = unravel(p, s);
        int64_t b = at[batch_axis], t = at[time_axis];
        if (t < lens[b]) at[time_axis] = lens[b] - 1 - t;
        want[p] = xv[ravel(at, s)];
      }
      expect_tensor(out, s, want);
    }
}

TEST(ReverseSequence, BadInputs) {
  Tensor x = Tensor::zeros({4, 2});
  expect_error<ValueError>([&] { ops::reverse_sequence(x, i64({1, 5})); }, "sequence length 5 is outside [0, 4]");
  expect_error<ValueError>([&] { ops::reverse_sequence(x, i64({1, 1, 1})); }, "sequence_lens must be (2)");
  expect_error<ValueError>([&] { ops::reverse_sequence(x, i64({1, 1}), 1, 1); }, "batch_axis and time_axis");
  expect_error<TypeError>([&] { ops::reverse_sequence(x, Tensor::ones({2})); }, "must be i64 or i32");
}

// ---------------------------------------------------------------- nonzero

TEST(Nonzero, OnnxExampleAndEveryDtype) {
  Tensor cond = to_dtype_raw(make({1, 0, 1, 1}, {2, 2}), DType::b8);
  Tensor y = ops::nonzero(cond);
  EXPECT_EQ(y.dtype(), DType::i64);
  expect_tensor(y, {2, 3}, {0, 1, 1, 0, 0, 1});
  Generator g(71);
  for (DType dt : kAllDtypes) {
    std::vector<double> xv = small_ints(3 * 4 * 2, 0, 1, g);
    Tensor x = ops::permute(make(xv, {2, 4, 3}, dt), {2, 1, 0});  // (3, 4, 2), strided
    std::vector<double> logical = vals(x);
    std::vector<double> want0, want1, want2;
    for (int64_t p = 0; p < 24; ++p)
      if (logical[p] != 0) {
        want0.push_back(static_cast<double>(p / 8));
        want1.push_back(static_cast<double>((p / 2) % 4));
        want2.push_back(static_cast<double>(p % 2));
      }
    std::vector<double> want = want0;
    want.insert(want.end(), want1.begin(), want1.end());
    want.insert(want.end(), want2.begin(), want2.end());
    expect_tensor(ops::nonzero(x), {3, static_cast<int64_t>(want0.size())}, want);
  }
  // NaN is nonzero; a scalar reads as one element; nothing nonzero gives (rank, 0).
  expect_tensor(ops::nonzero(make({0, NAN, 0}, {3})), {1, 1}, {1});
  expect_tensor(ops::nonzero(Tensor::scalar(2.0)), {1, 1}, {0});
  expect_tensor(ops::nonzero(Tensor::zeros({2, 2})), {2, 0}, {});
}

// ---------------------------------------------------------------- unique

void expect_unique(const ops::UniqueResult& r, const Shape& ys, const std::vector<double>& y,
                   const std::vector<double>& idx, const std::vector<double>& inv, const std::vector<double>& cnt) {
  expect_tensor(r.values, ys, y);
  expect_tensor(r.indices, {static_cast<int64_t>(idx.size())}, idx);
  expect_tensor(r.inverse_indices, {static_cast<int64_t>(inv.size())}, inv);
  expect_tensor(r.counts, {static_cast<int64_t>(cnt.size())}, cnt);
  EXPECT_EQ(r.indices.dtype(), DType::i64);
  EXPECT_EQ(r.inverse_indices.dtype(), DType::i64);
  EXPECT_EQ(r.counts.dtype(), DType::i64);
}

TEST(Unique, OnnxExamples) {
  Tensor x = make({2, 1, 1, 3, 4, 3}, {6});
  expect_unique(ops::unique(x, std::nullopt, false), {4}, {2, 1, 3, 4}, {0, 1, 3, 4}, {0, 1, 1, 2, 3, 2},
                {1, 2, 2, 1});
  expect_unique(ops::unique(x), {4}, {1, 2, 3, 4}, {1, 0, 3, 4}, {1, 0, 0, 2, 3, 2}, {2, 1, 2, 1});
  expect_unique(ops::unique(make({1, 3, 2, 3}, {2, 2})), {3}, {1, 2, 3}, {0, 2, 1}, {0, 2, 1, 2}, {1, 1, 2});
  Tensor rows = make({1, 0, 0, 1, 0, 0, 2, 3, 4}, {3, 3});
  expect_unique(ops::unique(rows, 0), {2, 3}, {1, 0, 0, 2, 3, 4}, {0, 2}, {0, 0, 1}, {2, 1});
  Tensor cube = make({1, 1, 0, 1, 2, 1, 0, 1, 1, 1, 0, 1, 2, 1, 0, 1}, {2, 4, 2});
  expect_unique(ops::unique(cube, 1), {2, 3, 2}, {0, 1, 1, 1, 2, 1, 0, 1, 1, 1, 2, 1}, {1, 0, 2}, {1, 0, 2, 0},
                {2, 1, 1});
  // axis -1 (ONNX's test_unique_sorted_with_negative_axis).
  Tensor cols = make({1, 0, 0, 1, 0, 0, 2, 3, 3}, {3, 3});
  expect_unique(ops::unique(cols, -1), {3, 2}, {0, 1, 0, 1, 3, 2}, {1, 0}, {1, 0, 0}, {2, 1});
}

// A naive reference: distinct values by linear search, in first-occurrence order, then sorted.
TEST(Unique, DtypesAndOrdersAgainstNaiveReference) {
  Generator g(81);
  for (DType dt : kAllDtypes)
    for (bool sorted : {true, false}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " sorted " << sorted);
      std::vector<double> xv = small_ints(40, dt == DType::b8 ? 0 : -3, dt == DType::b8 ? 1 : 6, g);
      if (dt == DType::u8)
        for (double& v : xv) v = std::abs(v);
      std::vector<double> y, idx, cnt;
      for (size_t i = 0; i < xv.size(); ++i) {
        auto it = std::find(y.begin(), y.end(), xv[i]);
        if (it == y.end()) {
          y.push_back(xv[i]);
          idx.push_back(static_cast<double>(i));
          cnt.push_back(1);
        } else {
          ++cnt[it - y.begin()];
        }
      }
      if (sorted) {
        std::vector<size_t> p(y.size());
        std::iota(p.begin(), p.end(), 0);
        std::sort(p.begin(), p.end(), [&](size_t a, size_t b) { return y[a] < y[b]; });
        std::vector<double> y2, i2, c2;
        for (size_t j : p) {
          y2.push_back(y[j]);
          i2.push_back(idx[j]);
          c2.push_back(cnt[j]);
        }
        y = y2, idx = i2, cnt = c2;
      }
      std::vector<double> inv;
      for (double v : xv) inv.push_back(static_cast<double>(std::find(y.begin(), y.end(), v) - y.begin()));
      ops::UniqueResult r = ops::unique(make(xv, {5, 8}, dt), std::nullopt, sorted);
      EXPECT_EQ(r.values.dtype(), dt);
      expect_unique(r, {static_cast<int64_t>(y.size())}, y, idx, inv, cnt);
    }
}

TEST(Unique, NanSortsLastAndGroupsTogether) {
  ops::UniqueResult r = ops::unique(make({NAN, 1, NAN, -2}, {4}));
  expect_unique(r, {3}, {-2, 1, NAN}, {3, 1, 0}, {2, 1, 2, 0}, {1, 1, 2});
}

// ---------------------------------------------------------------- lrn

std::vector<double> lrn_ref(const std::vector<double>& x, const Shape& s, int64_t size, double alpha, double beta,
                            double bias) {
  const int64_t N = s[0], C = s[1], S = numel(s) / (N * C);
  std::vector<double> y(x.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t p = 0; p < S; ++p) {
        double sq = 0;
        for (int64_t j = c - (size - 1) / 2; j <= c + size / 2; ++j)  // ceil((size-1)/2) = size/2
          if (j >= 0 && j < C) sq += x[(n * C + j) * S + p] * x[(n * C + j) * S + p];
        y[(n * C + c) * S + p] = x[(n * C + c) * S + p] / std::pow(bias + alpha / size * sq, beta);
      }
  return y;
}

TEST(Lrn, AgainstLoopInFloatDtypes) {
  Generator g(91);
  for (int64_t size : {1, 2, 3, 4, 5}) {
    Shape s{2, 6, 3, 2};
    std::vector<double> xv = vals(uniform(s, -3, 3, g, DType::f64));
    expect_tensor(ops::lrn(make(xv, s, DType::f64), size, 0.3, 0.6, 1.5), s, lrn_ref(xv, s, size, 0.3, 0.6, 1.5), 1e-12);
    Tensor y32 = ops::lrn(make(xv, s, DType::f32), size);
    EXPECT_EQ(y32.dtype(), DType::f32);
    expect_tensor(y32, s, lrn_ref(xv, s, size, 1e-4, 0.75, 1.0), 1e-6);
    Tensor h = make(xv, s, DType::f16);
    Tensor yh = ops::lrn(h, size, 0.3, 0.6, 1.5);
    EXPECT_EQ(yh.dtype(), DType::f16);
    expect_tensor(yh, s, lrn_ref(vals(h), s, size, 0.3, 0.6, 1.5), 2e-3);
  }
  // Rank 2 (no spatial dims) works too.
  std::vector<double> xv = {1, 2, 3, 4, 5, 6};
  expect_tensor(ops::lrn(make(xv, {2, 3}, DType::f64), 3, 1, 1, 1), {2, 3}, lrn_ref(xv, {2, 3}, 3, 1, 1, 1), 1e-12);
  expect_error<TypeError>([] { ops::lrn(Tensor::zeros({1, 2, 2}, DType::i32), 3); }, "lrn");
  expect_error<ValueError>([] { ops::lrn(Tensor::zeros({1, 2, 2}), 0); }, "size must be >= 1");
}

// ---------------------------------------------------------------- mean_variance_norm

TEST(MeanVarianceNorm, AgainstLoopForAxesSets) {
  Generator g(101);
  Shape s{2, 3, 2, 4};
  std::vector<double> xv = vals(uniform(s, -2, 5, g, DType::f64));
  for (std::vector<int64_t> axes : std::vector<std::vector<int64_t>>{{0, 2, 3}, {1}, {-1, -2}, {0, 1, 2, 3}}) {
    std::vector<bool> red(4, false);
    for (int64_t a : axes) red[a < 0 ? a + 4 : a] = true;
    // Group key: the coordinates on the kept axes.
    auto key = [&](int64_t p) {
      std::vector<int64_t> at = unravel(p, s);
      for (int d = 0; d < 4; ++d)
        if (red[d]) at[d] = 0;
      return ravel(at, s);
    };
    std::map<int64_t, std::pair<double, double>> sums;  // key -> (sum, count)
    for (int64_t p = 0; p < numel(s); ++p) sums[key(p)].first += xv[p], sums[key(p)].second += 1;
    std::map<int64_t, double> var;
    for (int64_t p = 0; p < numel(s); ++p) {
      double m = sums[key(p)].first / sums[key(p)].second;
      var[key(p)] += (xv[p] - m) * (xv[p] - m) / sums[key(p)].second;
    }
    std::vector<double> want;
    for (int64_t p = 0; p < numel(s); ++p) {
      double m = sums[key(p)].first / sums[key(p)].second;
      want.push_back((xv[p] - m) / (std::sqrt(var[key(p)]) + 1e-9));
    }
    expect_tensor(ops::mean_variance_norm(make(xv, s, DType::f64), axes), s, want, 1e-12);
    expect_tensor(ops::mean_variance_norm(make(xv, s, DType::f32), axes), s, want, 1e-5);
    EXPECT_EQ(ops::mean_variance_norm(make(xv, s, DType::f16), axes).dtype(), DType::f16);
  }
  // A constant group normalises to zero (the 1e-9 keeps it finite).
  expect_tensor(ops::mean_variance_norm(Tensor::full({1, 1, 2, 2}, 3.0)), {1, 1, 2, 2}, {0, 0, 0, 0});
  expect_error<ValueError>([] { ops::mean_variance_norm(Tensor::zeros({2, 2}), {1, -1}); }, "repeated");
  expect_error<IndexError>([] { ops::mean_variance_norm(Tensor::zeros({2, 2})); }, "mean_variance_norm");
}

// ---------------------------------------------------------------- det

double det_ref(const std::vector<double>& m, int64_t n) {  // cofactor expansion along row 0
  if (n == 0) return 1;
  if (n == 1) return m[0];
  double s = 0;
  for (int64_t j = 0; j < n; ++j) {
    std::vector<double> minor;
    for (int64_t r = 1; r < n; ++r)
      for (int64_t c = 0; c < n; ++c)
        if (c != j) minor.push_back(m[r * n + c]);
    s += (j % 2 ? -1 : 1) * m[j] * det_ref(minor, n - 1);
  }
  return s;
}

TEST(Det, ClosedFormsAndCofactorReference) {
  expect_tensor(ops::det(make({1, 2, 3, 4}, {2, 2})), {}, {-2}, 1e-6);
  // A permutation matrix (odd) and a singular matrix.
  expect_tensor(ops::det(make({0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 2, 3, 2, 4, 6, 0, 1, 1}, {2, 3, 3}, DType::f64)), {2},
                {-1, 0}, 1e-12);
  Generator g(111);
  for (int64_t n : {1, 2, 3, 4, 5}) {
    std::vector<double> mv = vals(uniform({3, 2, n, n}, -2, 2, g, DType::f64));
    std::vector<double> want;
    for (int64_t b = 0; b < 6; ++b)
      want.push_back(det_ref(std::vector<double>(mv.begin() + b * n * n, mv.begin() + (b + 1) * n * n), n));
    expect_tensor(ops::det(make(mv, {3, 2, n, n}, DType::f64)), {3, 2}, want, 1e-10);
    Tensor d32 = ops::det(make(mv, {3, 2, n, n}, DType::f32));
    EXPECT_EQ(d32.dtype(), DType::f32);
    std::vector<double> got = vals(d32);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-4 * std::max(1.0, std::abs(want[i])));
  }
  // A transposed view has the same determinant.
  Tensor m = make({2, -1, 0, 1, 3, 2, 0, 5, -1}, {3, 3}, DType::f64);
  expect_tensor(ops::det(ops::transpose(m, 0, 1)), {}, {det_ref(vals(m), 3)}, 1e-12);
  expect_error<ValueError>([] { ops::det(Tensor::zeros({2, 3})); }, "square matrices");
  expect_error<TypeError>([] { ops::det(Tensor::zeros({2, 2}, DType::i64)); }, "det");
}

}  // namespace
