// Federated averaging (dist.strategy = "fedavg", McMahan et al. 2017): every rank is a client
// that trains on its own share of the data for a few local epochs; after each round the
// clients' models are averaged, weighted by how many examples each client holds, and every
// client starts the next round from that average. The average is an allreduce (the sum of
// n_c * w_c over clients in the fixed tree, then divided by the sum of n_c): the same result a
// central server would compute and send back, without a rank that only waits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/dist/communicator.h"

namespace kiln::dist {

// Splits example indices between clients. "iid": a seeded shuffle dealt out evenly. "noniid":
// client c's share (n / clients examples) is drawn `major_fraction` from its two classes
// (2c and 2c + 1, modulo the class count) and the rest from the other classes, all without
// replacement; shares are disjoint. labels[i] is example i's class.
std::vector<std::vector<int64_t>> partition_clients(const std::vector<int64_t>& labels, int clients,
                                                    const std::string& kind, double major_fraction, uint64_t seed);

// In place on every rank: t = sum over ranks of weight_r * t_r / sum over ranks of weight_r.
void weighted_average(Communicator& comm, const std::vector<Tensor>& tensors, double weight);

}  // namespace kiln::dist
