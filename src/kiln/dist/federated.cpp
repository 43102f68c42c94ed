#include "kiln/dist/federated.h"

#include <algorithm>
#include <map>

#include "kiln/core/rng.h"
#include "kiln/ops/ops.h"

namespace kiln::dist {

namespace {
void shuffle(std::vector<int64_t>& v, Generator& gen) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[gen.next_u64() % i]);
}
}  // namespace

std::vector<std::vector<int64_t>> partition_clients(const std::vector<int64_t>& labels, int clients,
                                                    const std::string& kind, double major_fraction, uint64_t seed) {
  KILN_CHECK(clients >= 1, "fedavg: need at least one client, got ", clients);
  KILN_CHECK(kind == "iid" || kind == "noniid", "fedavg: dist.partition must be 'iid' or 'noniid', got '", kind, "'");
  KILN_CHECK(major_fraction >= 0 && major_fraction <= 1, "fedavg: dist.noniid_fraction must be in [0, 1], got ",
             major_fraction);
  const int64_t n = static_cast<int64_t>(labels.size());
  KILN_CHECK(n >= clients, "fedavg: ", n, " examples cannot be shared by ", clients, " clients");
  Generator gen(seed ^ 0xfedaull);
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(clients));
  if (kind == "iid") {
    std::vector<int64_t> all(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
    shuffle(all, gen);
    for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i % clients)].push_back(all[static_cast<size_t>(i)]);
    return out;
  }
  std::map<int64_t, std::vector<int64_t>> by_class;
  for (int64_t i = 0; i < n; ++i) by_class[labels[static_cast<size_t>(i)]].push_back(i);
  std::vector<int64_t> classes;
  for (auto& [c, v] : by_class) {
    shuffle(v, gen);
    classes.push_back(c);
  }
  const int64_t k = static_cast<int64_t>(classes.size()), share = n / clients;
  // Each client first takes its two classes' examples (up to major_fraction of its share) ...
  for (int c = 0; c < clients; ++c) {
    const int64_t want = static_cast<int64_t>(major_fraction * static_cast<double>(share));
    for (int64_t m = 0; m < 2 && k > 0; ++m) {
      auto& pool = by_class[classes[static_cast<size_t>((2 * c + m) % k)]];
      int64_t take = std::min<int64_t>(want / 2 + (m == 0 ? want % 2 : 0), static_cast<int64_t>(pool.size()));
      auto& dst = out[static_cast<size_t>(c)];
      dst.insert(dst.end(), pool.end() - take, pool.end());
      pool.resize(pool.size() - static_cast<size_t>(take));
    }
  }
  // ... then fills up from what is left of every class, in a seeded order.
  std::vector<int64_t> rest;
  for (auto& [c, v] : by_class) rest.insert(rest.end(), v.begin(), v.end());
  shuffle(rest, gen);
  size_t next = 0;
  for (int c = 0; c < clients; ++c) {
    auto& dst = out[static_cast<size_t>(c)];
    while (static_cast<int64_t>(dst.size()) < share && next < rest.size()) dst.push_back(rest[next++]);
    std::sort(dst.begin(), dst.end());
  }
  return out;
}

void weighted_average(Communicator& comm, const std::vector<Tensor>& tensors, double weight) {
  KILN_CHECK(weight > 0, "fedavg: a client's weight must be positive, got ", weight);
  Tensor total = Tensor::full({1}, weight, DType::f64);
  auto total_work = comm.allreduce(total, ReduceOp::sum);
  std::vector<std::pair<Tensor, WorkHandle>> works;
  for (const Tensor& t : tensors) {
    if (t.dtype() != DType::f32) continue;  // integer buffers (step counters, rng state) stay local
    KILN_CHECK(t.is_contiguous(), "fedavg: cannot average non-contiguous ", t.str());
    Tensor scaled = Tensor::empty(t.shape());
    const float* src = t.data<float>();
    float* dst = scaled.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) dst[i] = static_cast<float>(src[i] * weight);
    works.emplace_back(scaled, comm.allreduce(scaled, ReduceOp::sum));
  }
  total_work->wait();
  const double inv = 1.0 / total.item();
  size_t w = 0;
  for (const Tensor& t : tensors) {
    if (t.dtype() != DType::f32) continue;
    auto& [scaled, work] = works[w++];
    work->wait();
    float* dst = t.data<float>();
    const float* src = scaled.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) dst[i] = static_cast<float>(src[i] * inv);
  }
}

}  // namespace kiln::dist
