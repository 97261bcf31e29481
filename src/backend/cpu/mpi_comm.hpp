// MPI implementation of Comm for the CPU backend (host buffers are the "device" buffers), and the
// MPI control plane reused by other data planes.
#pragma once
#include <memory>

#include "backend/backend.hpp"

namespace moe {

// Communicator over MPI_COMM_WORLD (duplicated, MPI_ERRORS_RETURN). `compute` must be the CPU backend.
std::unique_ptr<Comm> make_mpi_world_comm(ComputeBackend& compute);

}  // namespace moe
