#include "kiln/dist/local_communicator.h"

#include <cstring>

namespace kiln::dist {

namespace {
WorkHandle finished(const char* what) {
  auto w = std::make_shared<Work>(what);
  w->finish(nullptr, 0.0);
  return w;
}
void copy_into(const Tensor& in, const Tensor& out, const char* op) {
  KILN_CHECK(in.is_contiguous() && out.is_contiguous() && in.dtype() == out.dtype() && in.numel() == out.numel(),
             "dist: ", op, ": with one rank, input ", in.str(), " and output ", out.str(),
             " must be contiguous tensors of the same size and dtype");
  if (in.numel() > 0)
    std::memcpy(out.raw_data(), in.raw_data(), static_cast<size_t>(in.numel()) * element_size(in.dtype()));
}
}  // namespace

WorkHandle LocalCommunicator::allreduce(Tensor, ReduceOp) { return finished("allreduce"); }
WorkHandle LocalCommunicator::reduce_scatter(Tensor in, Tensor out, ReduceOp) {
  copy_into(in, out, "reduce_scatter");
  return finished("reduce_scatter");
}
WorkHandle LocalCommunicator::allgather(Tensor in, Tensor out) {
  copy_into(in, out, "allgather");
  return finished("allgather");
}
WorkHandle LocalCommunicator::broadcast(Tensor, int root) {
  KILN_CHECK_INDEX(root == 0, "dist: broadcast: root ", root, " is not a rank of 1");
  return finished("broadcast");
}
WorkHandle LocalCommunicator::send(Tensor, int dst, int) {
  KILN_CHECK_INDEX(false, "dist: send: destination ", dst, " is not another rank: this process runs alone");
}
WorkHandle LocalCommunicator::recv(Tensor, int src, int) {
  KILN_CHECK_INDEX(false, "dist: recv: source ", src, " is not another rank: this process runs alone");
}
WorkHandle LocalCommunicator::barrier() { return finished("barrier"); }

}  // namespace kiln::dist
