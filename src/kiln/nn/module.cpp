// Module bookkeeping: registration, recursive traversal with dotted names, state dicts, modes.
#include "kiln/nn/module.h"

#include <unordered_set>

#include "kiln/core/grad_mode.h"

namespace kiln::nn {

namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Own entries first, then each child's, depth first in registration order. A tensor reachable
// under two names (a shared or tied weight) is listed once, under the first name.
template <typename Getter>
void collect(const Module& m, const std::string& prefix, Getter get,
             std::vector<std::pair<std::string, Tensor>>& out, std::unordered_set<const TensorImpl*>& seen) {
  for (const auto& [name, t] : get(m)) {
    if (seen.insert(t.impl_ptr().get()).second) out.emplace_back(join(prefix, name), t);
  }
  for (const auto& [name, child] : m.named_children()) collect(*child, join(prefix, name), get, out, seen);
}

}  // namespace

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  std::unordered_set<const TensorImpl*> seen;
  collect(*this, "", [](const Module& m) -> const auto& { return m.params_; }, out, seen);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  std::unordered_set<const TensorImpl*> seen;
  collect(*this, "", [](const Module& m) -> const auto& { return m.buffers_; }, out, seen);
  return out;
}

StateDict Module::state_dict() const {
  StateDict out;
  for (auto& [name, t] : named_parameters()) out.emplace(name, t.detach());
  for (auto& [name, t] : named_buffers()) out.emplace(name, t.detach());
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  std::vector<std::pair<std::string, Tensor>> targets = named_parameters();
  for (auto& b : named_buffers()) targets.push_back(b);

  // Validate everything before copying anything, so a failed load leaves the model untouched.
  std::vector<std::pair<Tensor, Tensor>> copies;  // (model tensor, checkpoint tensor)
  std::unordered_set<std::string> known;
  for (const auto& [name, t] : targets) {
    known.insert(name);
    auto it = state.find(name);
    if (it == state.end()) {
      KILN_CHECK(!strict, "load_state_dict: missing key '", name, "'");
      continue;
    }
    const Tensor& src = it->second;
    KILN_CHECK(src.defined(), "load_state_dict: key '", name, "' holds an undefined tensor");
    KILN_CHECK(src.shape() == t.shape(), "load_state_dict: shape mismatch for '", name, "': checkpoint ",
               shape_str(src.shape()), ", model ", shape_str(t.shape()));
    KILN_CHECK_TYPE(!strict || src.dtype() == t.dtype(), "load_state_dict: dtype mismatch for '", name,
                    "': checkpoint ", dtype_name(src.dtype()), ", model ", dtype_name(t.dtype()));
    copies.emplace_back(t, src);
  }
  if (strict) {
    for (const auto& [name, t] : state) {
      KILN_CHECK(known.count(name) != 0, "load_state_dict: unexpected key '", name, "'");
    }
  }
  NoGradGuard no_grad;
  for (auto& [dst, src] : copies) {
    if (dst.storage() == src.storage() && dst.offset() == src.offset() && dst.strides() == src.strides()) continue;
    copy_into(dst, src);
    dst.bump_version();
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad() {
  for (auto& t : parameters()) t.set_grad(Tensor());
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& t : parameters()) n += t.numel();
  return n;
}

void Module::check_new_name(const std::string& name) const {
  KILN_CHECK(!name.empty() && name.find('.') == std::string::npos, "register: invalid name '", name,
             "' (names are non-empty and contain no '.')");
  auto taken = [&](const auto& v) {
    for (const auto& e : v)
      if (e.first == name) return true;
    return false;
  };
  KILN_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), "register: name '", name,
             "' is already used in this module");
}

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  KILN_CHECK(t.defined(), "register_parameter: parameter '", name, "' is undefined");
  check_new_name(name);
  if (!t.requires_grad()) t.set_requires_grad(true);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  KILN_CHECK(t.defined(), "register_buffer: buffer '", name, "' is undefined");
  check_new_name(name);
  buffers_.emplace_back(name, t);
  return t;
}

}  // namespace kiln::nn
