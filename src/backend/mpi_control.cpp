// MpiControlPlane: the host control plane over MPI (see mpi_control.hpp).
#include "backend/mpi_control.hpp"

#include <algorithm>
#include <climits>
#include <numeric>

#include "backend/mpi_gather.hpp"
#include "core/error.hpp"
#include "core/mpi_session.hpp"
#include "core/watchdog.hpp"

namespace moe {

MpiControlPlane::MpiControlPlane(MPI_Comm comm) : comm_(comm) {
  try {
    MOE_REQUIRE(comm_ != MPI_COMM_NULL, "a communicator needs a valid MPI communicator");
    MOE_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    MOE_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MOE_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    MPI_Group group, world_group;
    MOE_MPI_CHECK(MPI_Comm_group(comm_, &group));
    MOE_MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world_group));
    std::vector<int> mine(size_);
    std::iota(mine.begin(), mine.end(), 0);
    world_ranks_.assign(size_, -1);
    const int rc = MPI_Group_translate_ranks(group, size_, mine.data(), world_group, world_ranks_.data());
    MPI_Group_free(&group);
    MPI_Group_free(&world_group);
    MOE_MPI_CHECK(rc);
  } catch (...) {
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    throw;
  }
}

MpiControlPlane::~MpiControlPlane() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm_);
}

int MpiControlPlane::mpi_count(int64_t n) {
  MOE_REQUIRE(n >= 0 && n <= INT_MAX, "MPI message of " + std::to_string(n) + " elements exceeds the int count limit");
  return static_cast<int>(n);
}

MPI_Comm MpiControlPlane::split_mpi(int color, int key) {
  BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
  MPI_Comm sub = MPI_COMM_NULL;
  MOE_MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
  return sub;
}

std::vector<int64_t> MpiControlPlane::all_to_all_counts(const std::vector<int64_t>& send, int per_peer) {
  BlockingWait wait(world_ranks_);
  MOE_REQUIRE(per_peer > 0 && static_cast<int64_t>(send.size()) == int64_t(size_) * per_peer,
              "all_to_all_counts: need per_peer counts for every rank");
  std::vector<int64_t> out(send.size());
  MOE_MPI_CHECK(MPI_Alltoall(send.data(), per_peer, MPI_INT64_T, out.data(), per_peer, MPI_INT64_T, comm_));
  return out;
}

void MpiControlPlane::all_reduce_sum_host(std::vector<int64_t>& v) {
  BlockingWait wait(world_ranks_);
  if (!v.empty()) MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v.data(), mpi_count(v.size()), MPI_INT64_T, MPI_SUM, comm_));
}

void MpiControlPlane::all_reduce_max_host(std::vector<double>& v) {
  BlockingWait wait(world_ranks_);
  if (!v.empty()) MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v.data(), mpi_count(v.size()), MPI_DOUBLE, MPI_MAX, comm_));
}

void MpiControlPlane::all_reduce_sum_host(std::vector<double>& v) {
  BlockingWait wait(world_ranks_);
  if (!v.empty()) MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v.data(), mpi_count(v.size()), MPI_DOUBLE, MPI_SUM, comm_));
}

std::vector<int64_t> MpiControlPlane::exclusive_scan_host(const std::vector<int64_t>& v) {
  BlockingWait wait(world_ranks_);
  std::vector<int64_t> out(v.size(), 0);
  if (!v.empty()) MOE_MPI_CHECK(MPI_Exscan(v.data(), out.data(), mpi_count(v.size()), MPI_INT64_T, MPI_SUM, comm_));
  if (rank_ == 0) std::fill(out.begin(), out.end(), 0);  // MPI leaves rank 0's result undefined
  return out;
}

void MpiControlPlane::broadcast_host(std::vector<float>& v, int root) {
  BlockingWait wait(world_ranks_);
  MOE_REQUIRE(root >= 0 && root < size_, "broadcast_host: root outside the group");
  int64_t n = static_cast<int64_t>(v.size());
  MOE_MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT64_T, root, comm_));
  v.resize(static_cast<size_t>(n));
  if (n > 0) MOE_MPI_CHECK(MPI_Bcast(v.data(), mpi_count(n), MPI_FLOAT, root, comm_));
}

std::vector<float> MpiControlPlane::gather_host(const std::vector<float>& v, int root) {
  BlockingWait wait(world_ranks_);
  return mpi_gather_host(comm_, v, MPI_FLOAT, root);
}

std::vector<double> MpiControlPlane::gather_host(const std::vector<double>& v, int root) {
  BlockingWait wait(world_ranks_);
  return mpi_gather_host(comm_, v, MPI_DOUBLE, root);
}

void MpiControlPlane::barrier() {
  BlockingWait wait(world_ranks_);
  MOE_MPI_CHECK(MPI_Barrier(comm_));
}

}  // namespace moe
