#include "kiln/core/thread_pool.h"

#include <omp.h>

#include <algorithm>
#include <exception>

#include "kiln/core/error.h"

namespace kiln {

namespace {
int g_num_threads = 0;  // 0: not yet set, use OpenMP's default
}

void set_num_threads(int n) {
  KILN_CHECK(n >= 1, "set_num_threads: expected at least 1 thread, got ", n);
  g_num_threads = n;
  omp_set_num_threads(n);
}

int get_num_threads() { return g_num_threads > 0 ? g_num_threads : omp_get_max_threads(); }

bool in_parallel_region() { return omp_in_parallel() != 0; }

void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  const std::function<void(int64_t, int64_t)>& fn) {
  if (end <= begin) return;
  int64_t n = end - begin;
  int threads = get_num_threads();
  if (threads <= 1 || n <= grain || in_parallel_region()) {
    fn(begin, end);
    return;
  }
  int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / std::max<int64_t>(grain, 1));
  std::exception_ptr error;
#pragma omp parallel num_threads(static_cast<int>(chunks))
  {
    int64_t t = omp_get_thread_num();
    int64_t nt = omp_get_num_threads();
    int64_t per = (n + nt - 1) / nt;
    int64_t lo = begin + t * per, hi = std::min(end, lo + per);
    if (lo < hi) {
      try {
        fn(lo, hi);
      } catch (...) {
#pragma omp critical(kiln_parallel_error)
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace kiln
