// Picks the f32 kernel build for this CPU once, at first use.
#include "kiln/ops/cpu/float_kernels.h"

#include <cstdlib>
#include <string>

namespace kiln::ops::cpu {

namespace portable { extern const FloatKernels kFloatKernels; }
namespace avx2 { extern const FloatKernels kFloatKernels; }
namespace avx512 { extern const FloatKernels kFloatKernels; }

bool cpu_supports_isa(std::string_view isa) {
  __builtin_cpu_init();
  if (isa == "portable") return true;
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return false;
}

namespace {
const FloatKernels& select() {
  std::string forced = std::getenv("KILN_ISA") ? std::getenv("KILN_ISA") : "";
  bool has512 = cpu_supports_isa("avx512");
  bool has2 = cpu_supports_isa("avx2");
  if (forced == "portable") return portable::kFloatKernels;
  if (forced == "avx2" && has2) return avx2::kFloatKernels;
  if (has512 && forced != "avx2") return avx512::kFloatKernels;
  if (has2) return avx2::kFloatKernels;
  return portable::kFloatKernels;
}
}  // namespace

const FloatKernels& float_kernels() {
  static const FloatKernels& k = select();
  return k;
}

const FloatKernels& float_kernels_portable() { return portable::kFloatKernels; }

std::string_view simd_level() { return float_kernels().isa; }

}  // namespace kiln::ops::cpu
