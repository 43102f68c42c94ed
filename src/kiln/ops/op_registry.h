// The op registry: every operator's name and fusion kind, one entry per row of ops.def. Passes
// (the graph compiler's fuser) look attributes up here instead of switching over op names.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace kiln::ops {

// TVM's fusion vocabulary; see ops.def for what each kind allows.
enum class FusionKind : uint8_t { elementwise, broadcast, injective, reduction, output_fusable, opaque };

std::string_view fusion_kind_name(FusionKind kind);

struct OpInfo {
  std::string_view name;
  FusionKind fusion;
};

// In ops.def order.
const std::vector<OpInfo>& op_registry();
// The entry for `name`, or nullptr when no op has that name.
const OpInfo* find_op(std::string_view name);

}  // namespace kiln::ops
