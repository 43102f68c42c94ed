// Collective algorithms over a Transport, run on the communicator's thread. Reductions follow
// the fixed tree of tree_reduce.h; data movement (allgather, broadcast) has no arithmetic and
// so no order to fix.
#pragma once

#include <cstdint>

#include "kiln/core/dtype.h"
#include "kiln/dist/communicator.h"
#include "kiln/dist/transport.h"

namespace kiln::dist {

// In place: data (n elements) = op over ranks. Recursive halving (a reduce-scatter whose pairing
// order is T(N)'s) then recursive doubling (allgather); ranks beyond the largest power of two P
// first hand their data to rank - P and get the result back at the end.
void tree_allreduce(Transport& t, void* data, int64_t n, DType dtype, ReduceOp op);
// out (block elements) = block `rank` of the reduction of in (size * block elements).
void tree_reduce_scatter(Transport& t, const void* in, void* out, int64_t block, DType dtype, ReduceOp op);
// out = concatenation of every rank's `bytes` from in, in rank order (a ring).
void ring_allgather(Transport& t, const void* in, void* out, int64_t bytes);
// data = root's data (a binomial tree).
void tree_broadcast(Transport& t, void* data, int64_t bytes, int root);
void barrier(Transport& t);

}  // namespace kiln::dist
