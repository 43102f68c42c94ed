// Shared optimiser helpers.
#include "kiln/optim/update_helpers.h"

#include "kiln/core/thread_pool.h"

namespace kiln::optim::detail {

Tensor grad_of(const Tensor& param, size_t index, const char* op) {
  KILN_CHECK_TYPE(param.dtype() == DType::f32 || param.dtype() == DType::f64, op, ": parameter ", index,
                  " has dtype ", dtype_name(param.dtype()), "; optimisers update f32 or f64 parameters");
  KILN_CHECK(param.is_contiguous(), op, ": parameter ", index, " ", shape_str(param.shape()),
             " is not contiguous");
  Tensor g = param.grad();
  if (!g.defined()) return g;
  KILN_CHECK(g.shape() == param.shape(), op, ": gradient of parameter ", index, " has shape ",
             shape_str(g.shape()), ", parameter ", shape_str(param.shape()));
  return contiguous_raw(to_dtype_raw(g, param.dtype()));
}

void update_chunks(int64_t n, const std::function<void(int64_t, int64_t)>& body) {
  parallel_for(0, n, kUpdateGrain, body);
}

std::pair<std::string, size_t> parse_state_key(const std::string& key, const std::vector<std::string>& slots,
                                               size_t num_params, const char* op) {
  size_t dot = key.rfind('.');
  std::string slot = dot == std::string::npos ? key : key.substr(0, dot);
  bool known = false;
  for (auto& s : slots) known = known || s == slot;
  KILN_CHECK(known && dot != std::string::npos && dot + 1 < key.size(), op, ": load_state_dict: unexpected key '",
             key, "'");
  size_t index = 0;
  for (size_t i = dot + 1; i < key.size(); ++i) {
    KILN_CHECK(key[i] >= '0' && key[i] <= '9' && index < (size_t{1} << 40), op,
               ": load_state_dict: unexpected key '", key, "'");
    index = index * 10 + static_cast<size_t>(key[i] - '0');
  }
  KILN_CHECK_INDEX(index < num_params, op, ": load_state_dict: key '", key, "' names parameter ", index,
                   " but the optimiser has ", num_params);
  return {slot, index};
}

Tensor load_slot(const std::string& key, const Tensor& value, const Tensor& param, const char* op) {
  KILN_CHECK(value.defined() && value.shape() == param.shape(), op, ": load_state_dict: shape mismatch for '", key,
             "': state ", value.defined() ? shape_str(value.shape()) : "undefined", ", parameter ",
             shape_str(param.shape()));
  KILN_CHECK_TYPE(value.dtype() == param.dtype(), op, ": load_state_dict: dtype mismatch for '", key, "': state ",
                  dtype_name(value.dtype()), ", parameter ", dtype_name(param.dtype()));
  return clone_raw(value);
}

int64_t load_step(const OptimState& state, const char* op) {
  auto it = state.find("step");
  KILN_CHECK(it != state.end(), op, ": load_state_dict: missing key 'step'");
  const Tensor& t = it->second;
  KILN_CHECK(t.defined() && t.numel() == 1 && is_integral(t.dtype()), op,
             ": load_state_dict: 'step' must be a one-element integer tensor, got ",
             t.defined() ? t.str() : "undefined");
  int64_t step = t.to_vector<int64_t>()[0];
  KILN_CHECK(step >= 0, op, ": load_state_dict: negative step ", step);
  return step;
}

Tensor step_tensor(int64_t step) { return Tensor::from_vector<int64_t>({step}, Shape{}); }

}  // namespace kiln::optim::detail
