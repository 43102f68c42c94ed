// A Communicator over any Transport: posted operations go to one communication thread, which
// runs collectives in posting order and keeps point-to-point messages in flight alongside them.
// The caller's threads never touch the transport, so MPI needs only MPI_THREAD_FUNNELED.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <thread>

#include "kiln/dist/communicator.h"
#include "kiln/dist/transport.h"

namespace kiln::dist {

class ThreadedCommunicator : public Communicator {
 public:
  // make_transport runs on the communication thread: MPI must be initialised by the thread that
  // will call it. Its errors are rethrown here.
  explicit ThreadedCommunicator(std::function<std::unique_ptr<Transport>()> make_transport);
  ~ThreadedCommunicator() override;  // finishes posted work, then destroys the transport on its thread

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return backend_; }
  WorkHandle allreduce(Tensor t, ReduceOp op) override;
  WorkHandle reduce_scatter(Tensor in, Tensor out, ReduceOp op) override;
  WorkHandle allgather(Tensor in, Tensor out) override;
  WorkHandle broadcast(Tensor t, int root) override;
  WorkHandle send(Tensor t, int dst, int tag) override;
  WorkHandle recv(Tensor t, int src, int tag) override;
  WorkHandle barrier() override;
  CommStats stats() const override;

 private:
  struct Task {
    WorkHandle work;
    std::function<void(Transport&)> run;                      // a collective, run to completion
    std::function<Transport::RequestPtr(Transport&)> start;   // a message, kept in flight
  };
  struct InFlight {
    WorkHandle work;
    Transport::RequestPtr request;
    std::chrono::steady_clock::time_point started;
  };
  // Queues a collective (`run`) or a message (`start`); op and t describe it in errors.
  WorkHandle post(const char* op, const Tensor& t, std::function<void(Transport&)> run,
                  std::function<Transport::RequestPtr(Transport&)> start = nullptr);
  void loop();
  bool poll_in_flight();

  int rank_ = 0, size_ = 1;
  std::string backend_;
  std::unique_ptr<Transport> transport_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  std::vector<InFlight> in_flight_;  // communication thread only
  bool stopping_ = false;
  int64_t posted_ = 0;
  std::atomic<int64_t> bytes_sent_{0}, messages_{0};
  std::atomic<double> busy_{0.0};
  std::thread thread_;
};

}  // namespace kiln::dist
