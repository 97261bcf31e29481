// The host control plane of every Comm (counts, host reductions, scans, broadcast, gather, barrier)
// over an MPI communicator, written once for the MPI and the NCCL data planes. Every call is a
// blocking collective bounded by run.timeout_s (watchdog BlockingWait).
#pragma once
#include <mpi.h>

#include <vector>

#include "backend/backend.hpp"

namespace moe {

class MpiControlPlane : public Comm {
 public:
  // Takes over `comm` (freed by the destructor unless MPI is finalized) and sets MPI_ERRORS_RETURN.
  explicit MpiControlPlane(MPI_Comm comm);
  ~MpiControlPlane() override;
  MpiControlPlane(const MpiControlPlane&) = delete;
  MpiControlPlane& operator=(const MpiControlPlane&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int world_rank_of(int group_rank) const override { return world_ranks_.at(group_rank); }

  std::vector<int64_t> all_to_all_counts(const std::vector<int64_t>& send, int per_peer) override;
  void all_reduce_sum_host(std::vector<int64_t>& values) override;
  void all_reduce_max_host(std::vector<double>& values) override;
  void all_reduce_sum_host(std::vector<double>& values) override;
  std::vector<int64_t> exclusive_scan_host(const std::vector<int64_t>& values) override;
  void broadcast_host(std::vector<float>& values, int root) override;
  std::vector<float> gather_host(const std::vector<float>& values, int root) override;
  std::vector<double> gather_host(const std::vector<double>& values, int root) override;
  void barrier() override;

 protected:
  // MPI_Comm_split of this group (collective); the caller owns the result.
  MPI_Comm split_mpi(int color, int key);
  MPI_Comm mpi() const { return comm_; }
  const std::vector<int>& world_ranks() const { return world_ranks_; }
  // Checked conversion of an element count to MPI's int.
  static int mpi_count(int64_t n);

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::vector<int> world_ranks_;  // [size] world rank of each group rank
};

}  // namespace moe
