// Point-to-point byte messages between ranks: what a collective algorithm (collectives.h) is
// built from. Implementations: MPI (mpi_transport.cpp) and, in the tests, an in-process mailbox
// that lets the algorithms run with many "ranks" as threads.
//
// Every call is made from one thread (the communicator's), so implementations need no locking
// beyond what their own library asks for.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace kiln::dist {

class Transport {
 public:
  // An outstanding non-blocking send or receive.
  class Request {
   public:
    virtual ~Request() = default;
    virtual bool test() = 0;  // true once complete; throws BackendError naming the peer on failure
  };
  using RequestPtr = std::unique_ptr<Request>;

  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;
  virtual RequestPtr isend(const void* data, int64_t bytes, int dst, int tag) = 0;
  virtual RequestPtr irecv(void* data, int64_t bytes, int src, int tag) = 0;

  // Blocking forms, polling with a short back-off so a waiting rank leaves the cores to compute.
  void send(const void* data, int64_t bytes, int dst, int tag);
  void recv(void* data, int64_t bytes, int src, int tag);
  void sendrecv(const void* out, int64_t out_bytes, int dst, void* in, int64_t in_bytes, int src, int tag);

  int64_t bytes_sent = 0;
  int64_t messages = 0;
};

// Waits for `r` with the same back-off (spins briefly, then sleeps up to 50 us between tests).
void wait_request(Transport::Request& r);

// Tags the collectives use (user send/recv tags must be below kReservedTagBase).
inline constexpr int kReservedTagBase = 1 << 20;

}  // namespace kiln::dist
