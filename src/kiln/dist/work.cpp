#include <atomic>

#include "kiln/dist/communicator.h"

namespace kiln::dist {

namespace {
std::atomic<int64_t> g_timeout_ms{300'000};
}

std::chrono::milliseconds Work::default_timeout() { return std::chrono::milliseconds(g_timeout_ms.load()); }
void Work::set_default_timeout(std::chrono::milliseconds t) { g_timeout_ms = t.count(); }

void Work::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  if (!cv_.wait_for(lk, timeout, [&] { return done_; }))
    throw BackendError(detail::concat("dist: ", what_, " did not finish within ", timeout.count() / 1000.0,
                                      " s: a peer rank died or stalled\nhelp: dist.timeout_s sets this limit"));
  if (error_) std::rethrow_exception(error_);
}

bool Work::done() const {
  std::lock_guard lk(mu_);
  return done_;
}

double Work::busy_seconds() const {
  std::lock_guard lk(mu_);
  return busy_;
}

void Work::finish(std::exception_ptr error, double busy_seconds) {
  {
    std::lock_guard lk(mu_);
    done_ = true;
    error_ = std::move(error);
    busy_ = busy_seconds;
  }
  cv_.notify_all();
}

}  // namespace kiln::dist
