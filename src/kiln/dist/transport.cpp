#include "kiln/dist/transport.h"

#include <thread>

namespace kiln::dist {

void wait_request(Transport::Request& r) {
  // Spinning keeps latency low for the small messages of a step; after that, sleep so the rank's
  // compute threads (which share the cores) are not slowed by a thread that only waits.
  for (int i = 0; i < 2000; ++i)
    if (r.test()) return;
  auto nap = std::chrono::microseconds(2);
  while (!r.test()) {
    std::this_thread::sleep_for(nap);
    if (nap < std::chrono::microseconds(16)) nap *= 2;
  }
}

void Transport::send(const void* data, int64_t bytes, int dst, int tag) {
  auto r = isend(data, bytes, dst, tag);
  wait_request(*r);
}

void Transport::recv(void* data, int64_t bytes, int src, int tag) {
  auto r = irecv(data, bytes, src, tag);
  wait_request(*r);
}

void Transport::sendrecv(const void* out, int64_t out_bytes, int dst, void* in, int64_t in_bytes, int src, int tag) {
  auto rr = irecv(in, in_bytes, src, tag);
  auto sr = isend(out, out_bytes, dst, tag);
  wait_request(*rr);
  wait_request(*sr);
}

}  // namespace kiln::dist
