// kiln info: what this build is and what it will run on.
#include <dnnl.hpp>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "kiln/cli/commands.h"
#include "kiln/core/error.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/float_kernels.h"
#include "kiln/ops/cpu/gemm_kernel.h"
#include "kiln/ops/cpu/tune_cache.h"

namespace kiln::cli {

int run_info() {
  const dnnl_version_t* v = dnnl_version();
  nlohmann::json j = {
      {"version", KILN_VERSION},
      {"simd", std::string(ops::cpu::simd_level())},
      {"gemm", detail::concat("kiln ", ops::cpu::gemm_kernels().isa, " ", ops::cpu::gemm_kernels().kernels[0].name)},
      {"reference_blas", detail::concat("oneDNN ", v->major, ".", v->minor, ".", v->patch)},
      {"tune_cache", ops::cpu::tune_cache_path()},
      {"threads", get_num_threads()},
      {"cuda", false},
      {"devices", {"cpu"}},
  };
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}

}  // namespace kiln::cli
