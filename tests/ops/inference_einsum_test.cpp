// Tests for ops::einsum against a brute-force reference that loops over every assignment of the
// labels: the common one-, two- and three-operand forms, ellipsis broadcasting, implicit output,
// integer dtypes, and malformed equations.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "kiln/core/rng.h"
#include "kiln/ops/inference_ops.h"
#include "kiln/ops/ops.h"

using namespace kiln;

namespace {

// out[out_labels] = sum over all other labels of prod_i x_i[terms_i]; terms are plain letters
// (tests spell ellipsis dims out as letters). A size-1 operand dim broadcasts.
std::vector<double> einsum_ref(const std::vector<std::string>& terms, const std::string& out,
                               const std::vector<Tensor>& xs, Shape* out_shape) {
  std::map<char, int64_t> size;
  for (size_t i = 0; i < xs.size(); ++i)
    for (size_t d = 0; d < terms[i].size(); ++d) {
      int64_t& s = size[terms[i][d]];
      s = std::max(s, xs[i].shape()[d]);
    }
  std::vector<char> labels;
  for (auto& [c, n] : size) labels.push_back(c);
  out_shape->clear();
  for (char c : out) out_shape->push_back(size[c]);
  std::vector<std::vector<double>> vs;
  for (const Tensor& x : xs) vs.push_back(x.to_vector<double>());
  std::vector<double> result(static_cast<size_t>(numel(*out_shape)), 0.0);
  for (auto& [c, n] : size)
    if (n == 0) return result;  // nothing to sum: zeros (or an empty result)
  std::map<char, int64_t> at;
  for (char c : labels) at[c] = 0;
  for (;;) {
    double p = 1;
    for (size_t i = 0; i < xs.size(); ++i) {
      int64_t off = 0;
      for (size_t d = 0; d < terms[i].size(); ++d) {
        int64_t n = xs[i].shape()[d];
        off = off * n + (n == 1 ? 0 : at[terms[i][d]]);
      }
      p *= vs[i][static_cast<size_t>(off)];
    }
    int64_t o = 0;
    for (char c : out) o = o * size[c] + at[c];
    result[static_cast<size_t>(o)] += p;
    size_t k = labels.size();  // odometer over all labels
    while (k > 0 && ++at[labels[k - 1]] == size[labels[k - 1]]) at[labels[--k]] = 0;
    if (k == 0) break;
  }
  return result;
}

struct Case {
  std::string equation;
  std::vector<Shape> shapes;
  std::vector<std::string> ref_terms;  // the equation's terms with ellipses spelled out
  std::string ref_out;
};

void check_case(const Case& c, DType dt, Generator& g) {
  SCOPED_TRACE(c.equation + " " + std::string(dtype_name(dt)));
  std::vector<Tensor> xs;
  for (const Shape& s : c.shapes) {
    Tensor x = uniform(s, -2, 2, g, DType::f64);
    if (!is_floating(dt)) x = ops::floor(x);
    xs.push_back(to_dtype_raw(x, dt));
  }
  Tensor y = ops::einsum(c.equation, xs);
  Shape want_shape;
  std::vector<double> want = einsum_ref(c.ref_terms, c.ref_out, xs, &want_shape);
  EXPECT_EQ(y.dtype(), dt);
  ASSERT_EQ(y.shape(), want_shape);
  std::vector<double> got = y.to_vector<double>();
  double tol = dt == DType::f32 ? 1e-4 : (dt == DType::f64 ? 1e-12 : 0);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol * std::max(1.0, std::abs(want[i]))) << i;
}

std::vector<Case> cases() {
  return {
      {"ij,jk->ik", {{3, 4}, {4, 5}}, {"ij", "jk"}, "ik"},
      {"bij,bjk->bik", {{2, 3, 4}, {2, 4, 5}}, {"bij", "bjk"}, "bik"},
      {"bhid,bhjd->bhij", {{2, 3, 4, 5}, {2, 3, 6, 5}}, {"bhid", "bhjd"}, "bhij"},
      {"bhij,bhjd->bhid", {{2, 2, 4, 3}, {2, 2, 3, 5}}, {"bhij", "bhjd"}, "bhid"},
      {"ii->i", {{4, 4}}, {"ii"}, "i"},
      {"ii", {{4, 4}}, {"ii"}, ""},  // implicit: the trace
      {"ij->ji", {{3, 5}}, {"ij"}, "ji"},
      {"ij->i", {{3, 5}}, {"ij"}, "i"},
      {"ij->", {{3, 5}}, {"ij"}, ""},
      {"ijk->kji", {{2, 3, 4}}, {"ijk"}, "kji"},
      {"i,i->", {{7}, {7}}, {"i", "i"}, ""},
      {"i,i", {{7}, {7}}, {"i", "i"}, ""},
      {"i,j->ij", {{3}, {4}}, {"i", "j"}, "ij"},
      {"ij,ij->ij", {{3, 4}, {3, 4}}, {"ij", "ij"}, "ij"},
      {"ij,jk", {{3, 4}, {4, 2}}, {"ij", "jk"}, "ik"},  // implicit: ik
      {"ba,ca", {{3, 4}, {2, 4}}, {"ba", "ca"}, "bc"},  // implicit output in alphabetical order
      {"ij,kj->ik", {{3, 4}, {5, 4}}, {"ij", "kj"}, "ik"},
      {"ijk,ikl->jl", {{2, 3, 4}, {2, 4, 5}}, {"ijk", "ikl"}, "jl"},
      {"ij,jk->ki", {{3, 4}, {4, 5}}, {"ij", "jk"}, "ki"},
      {"bi,bi->b", {{3, 4}, {3, 4}}, {"bi", "bi"}, "b"},
      {"ij,k->", {{2, 3}, {4}}, {"ij", "k"}, ""},  // labels summed inside each operand first
      {"iij->ji", {{3, 3, 2}}, {"iij"}, "ji"},
      {"bn,anm,bm->ba", {{2, 3}, {4, 3, 5}, {2, 5}}, {"bn", "anm", "bm"}, "ba"},
      {"ij,jk,kl->il", {{2, 3}, {3, 4}, {4, 5}}, {"ij", "jk", "kl"}, "il"},
      {"...ij,...jk->...ik", {{2, 3, 4}, {2, 4, 5}}, {"xij", "xjk"}, "xik"},
      {"...ij,...jk->...ik", {{2, 1, 3, 4}, {5, 4, 2}}, {"xyij", "yjk"}, "xyik"},  // batch broadcast
      {"...ii->...i", {{3, 5, 5}}, {"xii"}, "xi"},
      {"...ij->...ji", {{2, 3, 4}}, {"xij"}, "xji"},
      {"i...->...", {{3, 2, 4}}, {"ixy"}, "xy"},
      {"...i,...i", {{2, 3}, {3}}, {"xi", "i"}, "x"},  // implicit keeps the ellipsis dims
      {"bij, bjk -> bik", {{2, 3, 4}, {2, 4, 5}}, {"bij", "bjk"}, "bik"},  // spaces, as ONNX's example
      {"ij,jk->ik", {{3, 0}, {0, 5}}, {"ij", "jk"}, "ik"},  // empty contraction: zeros
  };
}

TEST(InferenceEinsum, MatchesBruteForceInF32AndF64) {
  Generator g(11);
  for (const Case& c : cases())
    for (DType dt : {DType::f64, DType::f32}) check_case(c, dt, g);
}

TEST(InferenceEinsum, IntegerDtypes) {
  Generator g(12);
  for (const Case& c : cases())
    for (DType dt : {DType::i64, DType::i32}) check_case(c, dt, g);
}

TEST(InferenceEinsum, StridedOperandsAndHalf) {
  Generator g(13);
  Tensor a = uniform({4, 3}, -1, 1, g, DType::f64), b = uniform({5, 4}, -1, 1, g, DType::f64);
  Tensor at = ops::transpose(a, 0, 1), bt = ops::transpose(b, 0, 1);  // (3, 4), (4, 5) views
  Shape s;
  std::vector<double> want = einsum_ref({"ij", "jk"}, "ik", {at, bt}, &s);
  Tensor y = ops::einsum("ij,jk->ik", {at, bt});
  std::vector<double> got = y.to_vector<double>();
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12);
  Tensor h = ops::einsum("ij,jk->ik", {to_dtype_raw(at, DType::f16), to_dtype_raw(bt, DType::f16)});
  EXPECT_EQ(h.dtype(), DType::f16);
  got = h.to_vector<double>();
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-2);
  // A pure transpose returns a fresh tensor, not a view onto the operand.
  for (const char* eq : {"ij->ji", "ij->ij", "ij"}) {
    Tensor t = ops::einsum(eq, {a});
    EXPECT_TRUE(t.is_contiguous());
    EXPECT_NE(t.storage(), a.storage()) << eq;
  }
}

TEST(InferenceEinsum, NoAutogradHistory) {
  Tensor a = Tensor::from_vector<double>({1, 2, 3, 4}, {2, 2});
  a.set_requires_grad(true);
  Tensor y = ops::einsum("ij,jk->ik", {a, a});
  EXPECT_EQ(y.grad_fn(), nullptr);
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{7, 10, 15, 22}));
}

template <typename E>
void expect_error(const std::string& eq, const std::vector<Tensor>& xs, const std::string& fragment) {
  try {
    ops::einsum(eq, xs);
    ADD_FAILURE() << eq << ": no error";
  } catch (const E& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
    EXPECT_NE(msg.find("einsum"), std::string::npos) << msg;
  }
}

TEST(InferenceEinsum, BadEquationsAndOperands) {
  Tensor m = Tensor::zeros({2, 3}), v = Tensor::zeros({3});
  expect_error<ValueError>("ij,jk->ik", {m}, "2 input terms but 1 operands");
  expect_error<ValueError>("ij->ik", {m}, "output label 'k' is in no input");
  expect_error<ValueError>("ij->ii", {m}, "appears twice");
  expect_error<ValueError>("i1->i", {v}, "unexpected character '1'");
  expect_error<ValueError>("i..->i", {v}, "'...'");
  expect_error<ValueError>("ijk->i", {m}, "names 3 dims but operand 0 has shape [2, 3]");
  expect_error<ValueError>("ij,ij->ij", {m, Tensor::zeros({2, 4})}, "label 'j' has sizes 3 and 4");
  expect_error<ValueError>("ii->i", {m}, "label 'i' has sizes 2 and 3");
  expect_error<TypeError>("i,i->", {v, Tensor::zeros({3}, DType::f64)}, "one dtype");
  expect_error<TypeError>("i->i", {Tensor::zeros({3}, DType::b8)}, "bool");
}

}  // namespace
