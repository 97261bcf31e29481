// Host gather over an MPI communicator, shared by the control planes of both backends.
#pragma once
#include <mpi.h>

#include <climits>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/mpi_session.hpp"

namespace moe {

// Concatenation of every rank's `v` in rank order on `root` (empty elsewhere). Collective.
template <class T>
std::vector<T> mpi_gather_host(MPI_Comm comm, const std::vector<T>& v, MPI_Datatype type, int root) {
  int rank = 0, size = 1;
  MOE_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MOE_MPI_CHECK(MPI_Comm_size(comm, &size));
  MOE_REQUIRE(root >= 0 && root < size, "gather_host: root outside the group");
  MOE_REQUIRE(v.size() <= size_t(INT_MAX), "gather_host: more than INT_MAX values from one rank");
  int n = static_cast<int>(v.size());
  std::vector<int> counts(size), displs(size);
  MOE_MPI_CHECK(MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, root, comm));
  std::vector<T> out;
  if (rank == root) {
    long long total = 0;
    for (int p = 0; p < size; ++p) {
      displs[p] = static_cast<int>(total);
      total += counts[p];
      MOE_REQUIRE(total <= INT_MAX, "gather_host: more than INT_MAX values in all");
    }
    out.resize(static_cast<size_t>(total));
  }
  MOE_MPI_CHECK(MPI_Gatherv(v.data(), n, type, out.data(), counts.data(), displs.data(), type, root, comm));
  return out;
}

}  // namespace moe
