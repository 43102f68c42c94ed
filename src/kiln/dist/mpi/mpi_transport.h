// MPI point-to-point messages as a Transport. Built only where CMake finds MPI (KILN_HAVE_MPI).
#pragma once

#include <memory>

#include "kiln/dist/transport.h"

namespace kiln::dist {

// Initialises MPI (MPI_THREAD_FUNNELED) on the calling thread; the transport finalises it.
std::unique_ptr<Transport> make_mpi_transport();

}  // namespace kiln::dist
