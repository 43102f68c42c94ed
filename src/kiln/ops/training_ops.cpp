// adagrad, momentum and adam (training_ops.h): ONNX's preview.training optimiser steps. Each
// parameter tensor is updated element by element from same-shaped gradient and state tensors;
// arithmetic in f64, results in the parameter's dtype.
#include "kiln/ops/training_ops.h"

#include <array>
#include <cmath>
#include <string>

namespace kiln::ops {

namespace {

double scalar(const Tensor& t, const char* op, const char* what, bool integral) {
  KILN_CHECK(t.defined(), op, ": ", what, " is undefined");
  KILN_CHECK(t.numel() == 1, op, ": ", what, " must hold one value, got shape ", shape_str(t.shape()));
  KILN_CHECK_TYPE(integral ? is_integral(t.dtype()) : is_floating(t.dtype()), op, ": ", what, " must be ",
                  integral ? "an integer" : "a float", " tensor, got ", dtype_name(t.dtype()));
  return t.item();
}

// Checks that every list has x's length and that tensor k of each list matches x[k] in shape and
// dtype (a float dtype).
void check_lists(const char* op, const std::vector<Tensor>& x, std::initializer_list<const std::vector<Tensor>*> others,
                 std::initializer_list<const char*> names) {
  KILN_CHECK(!x.empty(), op, ": needs at least one parameter tensor");
  for (size_t k = 0; k < x.size(); ++k) {
    KILN_CHECK(x[k].defined(), op, ": parameter ", k, " is undefined");
    KILN_CHECK_TYPE(x[k].dtype() == DType::f32 || x[k].dtype() == DType::f64, op, ": parameter ", k,
                    " must be f32 or f64, got ", dtype_name(x[k].dtype()));
  }
  auto name = names.begin();
  for (const std::vector<Tensor>* list : others) {
    KILN_CHECK(list->size() == x.size(), op, ": ", x.size(), " parameters but ", list->size(), " ", *name, " tensors");
    for (size_t k = 0; k < x.size(); ++k) {
      const Tensor& t = (*list)[k];
      KILN_CHECK(t.defined(), op, ": ", *name, " ", k, " is undefined");
      KILN_CHECK(t.shape() == x[k].shape() && t.dtype() == x[k].dtype(), op, ": ", *name, " ", k, " is ",
                 dtype_name(t.dtype()), shape_str(t.shape()), ", parameter ", k, " is ", dtype_name(x[k].dtype()),
                 shape_str(x[k].shape()));
    }
    ++name;
  }
}

// Calls step(i, in..., out...) for every element of tensor k of each list; `in` are the values of
// the input lists at element i (as double), `out` references to the outputs' doubles.
template <size_t NIn, size_t NOut, typename Step>
std::vector<Tensor> elementwise(const std::array<const std::vector<Tensor>*, NIn>& in, Step step) {
  const std::vector<Tensor>& x = *in[0];
  std::vector<Tensor> out(NOut * x.size());
  for (size_t k = 0; k < x.size(); ++k) {
    std::array<std::vector<double>, NIn> a;
    for (size_t j = 0; j < NIn; ++j) a[j] = (*in[j])[k].template to_vector<double>();
    std::array<std::vector<double>, NOut> b;
    for (auto& v : b) v.resize(a[0].size());
    for (size_t i = 0; i < a[0].size(); ++i) step(a, b, i);
    for (size_t j = 0; j < NOut; ++j)
      out[j * x.size() + k] = to_dtype_raw(Tensor::from_vector(b[j], x[k].shape()), x[k].dtype());
  }
  return out;
}

}  // namespace

std::vector<Tensor> adagrad(const Tensor& r, const Tensor& t, const std::vector<Tensor>& x,
                            const std::vector<Tensor>& g, const std::vector<Tensor>& h, double decay_factor,
                            double epsilon, double norm_coefficient) {
  const char* op = "adagrad";
  const double R = scalar(r, op, "R", false), T = scalar(t, op, "T", true);
  check_lists(op, x, {&g, &h}, {"gradient", "accumulated squared gradient"});
  const double rate = R / (1.0 + T * decay_factor);
  return elementwise<3, 2>({&x, &g, &h}, [&](const auto& a, auto& b, size_t i) {
    const double gr = norm_coefficient * a[0][i] + a[1][i];
    const double h_new = a[2][i] + gr * gr;
    b[0][i] = a[0][i] - rate * gr / (std::sqrt(h_new) + epsilon);
    b[1][i] = h_new;
  });
}

std::vector<Tensor> momentum(const Tensor& r, const Tensor& t, const std::vector<Tensor>& x,
                             const std::vector<Tensor>& g, const std::vector<Tensor>& v, double alpha, double beta,
                             double norm_coefficient, bool nesterov) {
  const char* op = "momentum";
  const double R = scalar(r, op, "R", false), T = scalar(t, op, "T", true);
  check_lists(op, x, {&g, &v}, {"gradient", "momentum"});
  const double beta_t = T > 0 ? beta : 1.0;  // the first step takes the whole gradient
  return elementwise<3, 2>({&x, &g, &v}, [&](const auto& a, auto& b, size_t i) {
    const double gr = norm_coefficient * a[0][i] + a[1][i];
    const double v_new = alpha * a[2][i] + beta_t * gr;
    b[0][i] = a[0][i] - R * (nesterov ? gr + alpha * v_new : v_new);
    b[1][i] = v_new;
  });
}

std::vector<Tensor> adam(const Tensor& r, const Tensor& t, const std::vector<Tensor>& x, const std::vector<Tensor>& g,
                         const std::vector<Tensor>& v, const std::vector<Tensor>& h, double alpha, double beta,
                         double epsilon, double norm_coefficient, double norm_coefficient_post) {
  const char* op = "adam";
  const double R = scalar(r, op, "R", false), T = scalar(t, op, "T", true);
  check_lists(op, x, {&g, &v, &h}, {"gradient", "first moment", "second moment"});
  const double rate = T > 0 ? R * std::sqrt(1.0 - std::pow(beta, T)) / (1.0 - std::pow(alpha, T)) : R;
  return elementwise<4, 3>({&x, &g, &v, &h}, [&](const auto& a, auto& b, size_t i) {
    const double gr = norm_coefficient * a[0][i] + a[1][i];
    const double v_new = alpha * a[2][i] + (1.0 - alpha) * gr;
    const double h_new = beta * a[3][i] + (1.0 - beta) * gr * gr;
    b[0][i] = (1.0 - norm_coefficient_post) * (a[0][i] - rate * v_new / (std::sqrt(h_new) + epsilon));
    b[1][i] = v_new;
    b[2][i] = h_new;
  });
}

}  // namespace kiln::ops
