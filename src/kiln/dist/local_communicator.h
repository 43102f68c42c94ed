// The communicator of a single process: one rank, every collective the identity. It keeps
// single-process training free of MPI at run time (MPI_Init is never called).
#pragma once

#include "kiln/dist/communicator.h"

namespace kiln::dist {

class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }
  WorkHandle allreduce(Tensor t, ReduceOp op) override;
  WorkHandle reduce_scatter(Tensor in, Tensor out, ReduceOp op) override;
  WorkHandle allgather(Tensor in, Tensor out) override;
  WorkHandle broadcast(Tensor t, int root) override;
  WorkHandle send(Tensor t, int dst, int tag) override;
  WorkHandle recv(Tensor t, int src, int tag) override;
  WorkHandle barrier() override;
  CommStats stats() const override { return {}; }
};

}  // namespace kiln::dist
