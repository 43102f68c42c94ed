// Graph kernels for ONNX's random operators that draw from NumPy's legacy stream
// (graph/numpy_random.h). Graph form:
//   bernoulli (input) dtype (a Kiln dtype name; absent: input's) seed (float; absent: a fresh seed)
//             y[i] = 1 with probability input[i], in row-major order: what np.random.seed(seed)
//             then np.random.binomial(1, input) gives (ONNX's reference implementation)
// (dropout, the other such op, is in kernels_nn.cpp.)
#include <cmath>

#include "kiln/graph/kernels.h"
#include "kiln/graph/numpy_random.h"

namespace kiln::graph {

namespace {

std::vector<Tensor> bernoulli(const Node& node, const std::vector<Tensor>& inputs) {
  const Tensor& x = required_input(node, inputs, 0, "input");
  if (!is_floating(x.dtype()))
    kernel_error(node, detail::concat("input must hold float probabilities, got ", dtype_name(x.dtype())));
  const DType out_dtype = node.has_attr("dtype") ? dtype_from_name(node.attr_string("dtype")) : x.dtype();
  const std::vector<double> p = x.to_vector<double>();
  for (size_t i = 0; i < p.size(); ++i)
    if (!(p[i] >= 0.0 && p[i] <= 1.0))
      kernel_error(node, detail::concat("probability ", p[i], " at element ", i, " is not in [0, 1]"));
  // ONNX's seed is a float; np.random.seed takes its integer value.
  const uint32_t seed =
      node.has_attr("seed") ? static_cast<uint32_t>(static_cast<int64_t>(node.attr_float("seed"))) : fresh_seed();
  std::mt19937 gen(seed);
  std::vector<double> y(p.size());
  for (size_t i = 0; i < p.size(); ++i) y[i] = numpy_bernoulli(gen, p[i]) ? 1.0 : 0.0;  // one stream: sequential
  return {to_dtype_raw(Tensor::from_vector(y, x.shape()), out_dtype)};
}

}  // namespace

void register_random_kernels(KernelTable& t) { t.add("bernoulli", bernoulli); }

}  // namespace kiln::graph
