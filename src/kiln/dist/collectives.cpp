#include "kiln/dist/collectives.h"

#include <cstring>
#include <utility>
#include <vector>

#include "kiln/dist/tree_reduce.h"

namespace kiln::dist {

namespace {
constexpr int kTagFold = kReservedTagBase + 1;
constexpr int kTagHalve = kReservedTagBase + 2;
constexpr int kTagGather = kReservedTagBase + 3;
constexpr int kTagBroadcast = kReservedTagBase + 4;

// Recursive halving among the first P ranks. On return [lo, hi) is the part of `data` this rank
// holds fully reduced; `parents` records the segments for the doubling that undoes it.
void halve(Transport& t, char* data, int64_t n, DType dtype, ReduceOp op, int p, int64_t& lo, int64_t& hi,
           std::vector<std::pair<int64_t, int64_t>>& parents) {
  const int r = t.rank();
  const int64_t es = static_cast<int64_t>(element_size(dtype));
  std::vector<char> incoming(static_cast<size_t>((n - n / 2) * es));
  lo = 0;
  hi = n;
  for (int d = p / 2; d >= 1; d /= 2) {
    const int partner = r ^ d;
    const int64_t mid = lo + (hi - lo) / 2;
    const bool keep_low = (r & d) == 0;
    const int64_t keep_lo = keep_low ? lo : mid, keep_hi = keep_low ? mid : hi;
    const int64_t give_lo = keep_low ? mid : lo, give_hi = keep_low ? hi : mid;
    t.sendrecv(data + give_lo * es, (give_hi - give_lo) * es, partner, incoming.data(), (keep_hi - keep_lo) * es,
               partner, kTagHalve);
    combine(data + keep_lo * es, incoming.data(), keep_hi - keep_lo, dtype, op);
    parents.emplace_back(lo, hi);
    lo = keep_lo;
    hi = keep_hi;
  }
}

// Recursive doubling: undoes halve(), after which every one of the P ranks holds all of data.
void double_up(Transport& t, char* data, int64_t es, int p, int64_t lo, int64_t hi,
               std::vector<std::pair<int64_t, int64_t>>& parents) {
  const int r = t.rank();
  for (int d = 1; d < p; d *= 2) {
    auto [plo, phi] = parents.back();
    parents.pop_back();
    const bool kept_low = (r & d) == 0;  // as in halve(): decided by the bit, not by the bounds
    const int64_t olo = kept_low ? hi : plo, ohi = kept_low ? phi : lo;  // the partner's half
    t.sendrecv(data + lo * es, (hi - lo) * es, r ^ d, data + olo * es, (ohi - olo) * es, r ^ d, kTagGather);
    lo = plo;
    hi = phi;
  }
}
}  // namespace

void tree_allreduce(Transport& t, void* data_v, int64_t n, DType dtype, ReduceOp op) {
  const int size = t.size(), r = t.rank();
  if (size == 1 || n == 0) return;
  char* data = static_cast<char*>(data_v);
  const int64_t es = static_cast<int64_t>(element_size(dtype));
  const int p = largest_power_of_two_at_most(size);
  if (r >= p) {  // folded in: hand the data over, get the result back
    t.send(data, n * es, r - p, kTagFold);
    t.recv(data, n * es, r - p, kTagFold);
    return;
  }
  if (r < size - p) {
    std::vector<char> tail(static_cast<size_t>(n * es));
    t.recv(tail.data(), n * es, r + p, kTagFold);
    combine(data, tail.data(), n, dtype, op);
  }
  int64_t lo = 0, hi = n;
  std::vector<std::pair<int64_t, int64_t>> parents;
  halve(t, data, n, dtype, op, p, lo, hi, parents);
  double_up(t, data, es, p, lo, hi, parents);
  if (r < size - p) t.send(data, n * es, r + p, kTagFold);
}

void tree_reduce_scatter(Transport& t, const void* in, void* out, int64_t block, DType dtype, ReduceOp op) {
  const int size = t.size(), r = t.rank();
  if (block == 0) return;
  const int64_t es = static_cast<int64_t>(element_size(dtype));
  std::vector<char> work(static_cast<size_t>(block * size * es));
  std::memcpy(work.data(), in, work.size());
  if (largest_power_of_two_at_most(size) != size) {
    // The halving would not end on rank-sized blocks: reduce everything, keep this rank's block.
    tree_allreduce(t, work.data(), block * size, dtype, op);
  } else if (size > 1) {
    int64_t lo = 0, hi = 0;
    std::vector<std::pair<int64_t, int64_t>> parents;
    halve(t, work.data(), block * size, dtype, op, size, lo, hi, parents);
    KILN_ASSERT(lo == r * block && hi == lo + block, "reduce_scatter ended on [", lo, ", ", hi, ")");
  }
  std::memcpy(out, work.data() + r * block * es, static_cast<size_t>(block * es));
}

void ring_allgather(Transport& t, const void* in, void* out_v, int64_t bytes) {
  const int size = t.size(), r = t.rank();
  if (bytes == 0) return;
  char* out = static_cast<char*>(out_v);
  std::memcpy(out + r * bytes, in, static_cast<size_t>(bytes));
  const int next = (r + 1) % size, prev = (r + size - 1) % size;
  for (int s = 0; s < size - 1; ++s) {
    const int send_block = (r - s + size) % size, recv_block = (r - s - 1 + size) % size;
    t.sendrecv(out + send_block * bytes, bytes, next, out + recv_block * bytes, bytes, prev, kTagGather);
  }
}

void tree_broadcast(Transport& t, void* data, int64_t bytes, int root) {
  const int size = t.size();
  if (bytes == 0) return;
  const int vr = (t.rank() - root + size) % size;  // rank relative to the root
  for (int mask = 1; mask < size; mask *= 2) {
    if (vr < mask) {
      if (vr + mask < size) t.send(data, bytes, (vr + mask + root) % size, kTagBroadcast);
    } else if (vr < 2 * mask) {
      t.recv(data, bytes, (vr - mask + root) % size, kTagBroadcast);
    }
  }
}

void barrier(Transport& t) {
  int64_t token = 0;
  tree_allreduce(t, &token, 1, DType::i64, ReduceOp::sum);
}

}  // namespace kiln::dist
