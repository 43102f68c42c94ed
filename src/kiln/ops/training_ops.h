// One optimiser step as a pure function, with the semantics of ONNX's ai.onnx.preview.training
// operators (Adagrad, Momentum, Adam): a graph that trains carries its update as nodes. Each takes
// the learning rate R and the step count T (one-element tensors) and n parameter tensors with their
// gradients and state; it returns the new parameters, then the new state, in ONNX's output order.
// f32 or f64 (per tensor), element arithmetic in f64. Nothing here records autograd history.
#pragma once

#include <vector>

#include "kiln/core/tensor.h"

namespace kiln::ops {

// r = R / (1 + T decay_factor); g' = norm_coefficient x + g; h_new = h + g'^2;
// x_new = x - r g' / (sqrt(h_new) + epsilon). -> {x_new..., h_new...}
std::vector<Tensor> adagrad(const Tensor& r, const Tensor& t, const std::vector<Tensor>& x,
                            const std::vector<Tensor>& g, const std::vector<Tensor>& h, double decay_factor = 0.0,
                            double epsilon = 1e-6, double norm_coefficient = 0.0);

// g' = norm_coefficient x + g; v_new = alpha v + (T > 0 ? beta : 1) g';
// x_new = x - R v_new (standard) or x - R (g' + alpha v_new) (nesterov). -> {x_new..., v_new...}
std::vector<Tensor> momentum(const Tensor& r, const Tensor& t, const std::vector<Tensor>& x,
                             const std::vector<Tensor>& g, const std::vector<Tensor>& v, double alpha, double beta,
                             double norm_coefficient, bool nesterov = false);

// g' = norm_coefficient x + g; v_new = alpha v + (1 - alpha) g'; h_new = beta h + (1 - beta) g'^2;
// r = T > 0 ? R sqrt(1 - beta^T) / (1 - alpha^T) : R;
// x_new = (1 - norm_coefficient_post) (x - r v_new / (sqrt(h_new) + epsilon)). -> {x_new..., v_new..., h_new...}
std::vector<Tensor> adam(const Tensor& r, const Tensor& t, const std::vector<Tensor>& x, const std::vector<Tensor>& g,
                         const std::vector<Tensor>& v, const std::vector<Tensor>& h, double alpha = 0.9,
                         double beta = 0.999, double epsilon = 1e-6, double norm_coefficient = 0.0,
                         double norm_coefficient_post = 0.0);

}  // namespace kiln::ops
