// Which communicator this process gets, and the helpers every strategy shares.
#include <cstdlib>
#include <mutex>

#include "kiln/dist/communicator.h"
#include "kiln/dist/local_communicator.h"
#include "kiln/dist/threaded_communicator.h"
#ifdef KILN_HAVE_MPI
#include "kiln/dist/mpi/mpi_transport.h"
#endif

namespace kiln::dist {

namespace {
Communicator* g_world = nullptr;
std::once_flag g_world_once;
}  // namespace

// Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; PMIx-based launchers (srun, prterun) PMIX_RANK;
// MPICH-style ones PMI_SIZE.
bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("PMI_SIZE");
}

Communicator& world() {
  std::call_once(g_world_once, [] {
    if (!launched_by_mpi()) {
      g_world = new LocalCommunicator();
      return;
    }
#ifdef KILN_HAVE_MPI
    // Deliberately never destroyed by static destruction: shutdown() finalises MPI on a clean
    // exit, and a failing rank exits without waiting on peers that may be gone.
    g_world = new ThreadedCommunicator(make_mpi_transport);
#else
    throw BackendError("dist: started by an MPI launcher, but this kiln was built without MPI"
                       "\nhelp: install libopenmpi-dev and rebuild");
#endif
  });
  return *g_world;
}

void shutdown() {
  if (g_world) {
    delete g_world;
    g_world = nullptr;
  }
}

std::string log_prefix() {
  if (!g_world || g_world->size() == 1) return "";
  return detail::concat("[rank ", g_world->rank(), "/", g_world->size(), "] ");
}

bool all_equal(Communicator& c, int64_t value) {
  Tensor lo = Tensor::from_vector(std::vector<int64_t>{value});
  Tensor hi = Tensor::from_vector(std::vector<int64_t>{value});
  auto a = c.allreduce(lo, ReduceOp::min);
  auto b = c.allreduce(hi, ReduceOp::max);
  a->wait();
  b->wait();
  return lo.item() == hi.item();
}

}  // namespace kiln::dist
