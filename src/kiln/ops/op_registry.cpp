// Builds the op registry from the ops.def table.
#include "kiln/ops/op_registry.h"

namespace kiln::ops {

std::string_view fusion_kind_name(FusionKind kind) {
  switch (kind) {
    case FusionKind::elementwise: return "elementwise";
    case FusionKind::broadcast: return "broadcast";
    case FusionKind::injective: return "injective";
    case FusionKind::reduction: return "reduction";
    case FusionKind::output_fusable: return "output_fusable";
    case FusionKind::opaque: return "opaque";
  }
  return "?";
}

const std::vector<OpInfo>& op_registry() {
  static const std::vector<OpInfo> registry = {
#define KILN_OP(name, kind) {#name, FusionKind::kind},
#include "kiln/ops/ops.def"
#undef KILN_OP
  };
  return registry;
}

const OpInfo* find_op(std::string_view name) {
  for (const OpInfo& op : op_registry())
    if (op.name == name) return &op;
  return nullptr;
}

}  // namespace kiln::ops
