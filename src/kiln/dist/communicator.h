// The Communicator: collectives and point-to-point messages between the processes of one job,
// on contiguous CPU tensors. Every operation is non-blocking: it returns a Work handle at once
// and runs on the communicator's own thread, so computation (a backward pass) goes on while
// gradients travel. Operations run in the order they are posted, which must be the same on
// every rank for collectives (as in MPI).
//
// Reductions sum in a fixed tree (tree_reduce.h), never in an order MPI picks at run time: the
// same inputs give the same bits on every rank and in every run.
#pragma once

#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <string>

#include "kiln/core/tensor.h"

namespace kiln::dist {

enum class ReduceOp { sum, max, min };

// A handle on a posted operation.
class Work {
 public:
  explicit Work(std::string what) : what_(std::move(what)) {}
  // Blocks until the operation finished; rethrows its error. Gives up with an error naming the
  // operation after `timeout` (a peer that died or hangs must not hang this rank forever).
  void wait(std::chrono::milliseconds timeout = default_timeout());
  bool done() const;
  const std::string& what() const { return what_; }
  double busy_seconds() const;  // time the communication thread spent on it (0 until done)

  // For communicator implementations.
  void finish(std::exception_ptr error, double busy_seconds);

  static std::chrono::milliseconds default_timeout();
  static void set_default_timeout(std::chrono::milliseconds t);

 private:
  std::string what_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
  double busy_ = 0.0;
};
using WorkHandle = std::shared_ptr<Work>;

// Bytes this process has put on the wire, for compression and bandwidth figures.
struct CommStats {
  int64_t bytes_sent = 0;
  int64_t messages = 0;
  double busy_seconds = 0.0;  // total time the communication thread spent in operations
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "local" or "mpi"

  // In place, on every rank: t = op over ranks of t. f32, f64 or i64, contiguous.
  virtual WorkHandle allreduce(Tensor t, ReduceOp op = ReduceOp::sum) = 0;
  // out = block `rank` of (op over ranks of in); in.numel() == size * out.numel().
  virtual WorkHandle reduce_scatter(Tensor in, Tensor out, ReduceOp op = ReduceOp::sum) = 0;
  // out = every rank's `in`, concatenated in rank order; out.numel() == size * in.numel().
  virtual WorkHandle allgather(Tensor in, Tensor out) = 0;
  virtual WorkHandle broadcast(Tensor t, int root) = 0;
  virtual WorkHandle send(Tensor t, int dst, int tag = 0) = 0;
  virtual WorkHandle recv(Tensor t, int src, int tag = 0) = 0;
  virtual WorkHandle barrier() = 0;
  virtual CommStats stats() const = 0;
};

// The communicator for this process: MPI when launched by mpirun (or another launcher that sets
// the PMIx/PMI environment), the one-rank local communicator otherwise. Created once.
Communicator& world();
// True when this process was started by an MPI launcher.
bool launched_by_mpi();
// Finalises the world communicator (MPI_Finalize) at a clean exit. A rank that fails exits
// without it, so it never waits on peers that may be gone.
void shutdown();
// "[rank R/N] " under a multi-rank launch, "" otherwise: the prefix of every log line.
std::string log_prefix();

// Blocking helpers.
inline void allreduce_wait(Communicator& c, Tensor t, ReduceOp op = ReduceOp::sum) { c.allreduce(t, op)->wait(); }
// True on every rank when `value` is the same on every rank.
bool all_equal(Communicator& c, int64_t value);

}  // namespace kiln::dist
