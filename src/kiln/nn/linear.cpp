// Linear and Embedding.
#include "kiln/nn/linear.h"

#include <cmath>

#include "kiln/nn/init.h"
#include "kiln/ops/linalg.h"
#include "kiln/ops/nn_ops.h"

namespace kiln::nn {

Linear::Linear(int64_t in_features, int64_t out_features, Generator& gen, bool bias) {
  KILN_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive, got in ", in_features,
             ", out ", out_features);
  weight_ = Tensor::empty({out_features, in_features});
  init::kaiming_uniform_(weight_, gen, std::sqrt(5.0));
  register_parameter("weight", weight_);
  if (bias) {
    double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    bias_ = Tensor::empty({out_features});
    init::uniform_(bias_, gen, -bound, bound);
    register_parameter("bias", bias_);
  }
}

Tensor Linear::forward(const Tensor& x) {
  KILN_CHECK(x.dim() >= 1 && x.size(-1) == in_features(), "Linear: expected input (..., ", in_features(),
             "), got ", shape_str(x.shape()));
  return ops::linear(x, weight_, bias_);
}

Tensor Linear::forward_act(const Tensor& x, ops::LinearActivation act) {
  KILN_CHECK(x.dim() >= 1 && x.size(-1) == in_features(), "Linear: expected input (..., ", in_features(),
             "), got ", shape_str(x.shape()));
  return ops::linear_act(x, weight_, bias_, act);
}

Embedding::Embedding(int64_t num_embeddings, int64_t dim, Generator& gen) {
  KILN_CHECK(num_embeddings > 0 && dim > 0, "Embedding: sizes must be positive, got ", num_embeddings, " x ", dim);
  weight_ = Tensor::empty({num_embeddings, dim});
  init::normal_(weight_, gen, 0.0, 1.0);
  register_parameter("weight", weight_);
}

Tensor Embedding::forward(const Tensor& indices) { return ops::embedding(weight_, indices); }

}  // namespace kiln::nn
