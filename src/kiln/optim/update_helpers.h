// Shared pieces of the optimisers (internal to optim/): gradient validation, the threaded
// elementwise update driver and state-dict parsing.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kiln/core/tensor.h"
#include "kiln/optim/optimizer.h"

namespace kiln::optim::detail {

// Updates are elementwise and memory bound: chunks this large amortise the thread start-up.
constexpr int64_t kUpdateGrain = 1 << 15;

// The gradient of params[i] as a contiguous tensor of the parameter's dtype, or undefined when
// the parameter has no gradient (it is then skipped, as in PyTorch). Checks the parameter is a
// contiguous f32/f64 tensor and the gradient has its shape.
Tensor grad_of(const Tensor& param, size_t index, const char* op);

// Calls body(lo, hi) over chunks of [0, n) on the thread pool; each element is touched by
// exactly one chunk, so results do not depend on the thread count.
void update_chunks(int64_t n, const std::function<void(int64_t, int64_t)>& body);

// State dict keys "<slot>.<index>" -> (slot, index); throws naming the key when malformed, the
// slot is unknown or the index is out of range.
std::pair<std::string, size_t> parse_state_key(const std::string& key, const std::vector<std::string>& slots,
                                               size_t num_params, const char* op);
// Checks a state tensor against its parameter (shape and dtype) and returns a private copy.
Tensor load_slot(const std::string& key, const Tensor& value, const Tensor& param, const char* op);
// The "step" entry: a one-element integer tensor.
int64_t load_step(const OptimState& state, const char* op);
Tensor step_tensor(int64_t step);

}  // namespace kiln::optim::detail
