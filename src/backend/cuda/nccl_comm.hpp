// NCCL implementation of Comm: data plane on device buffers ordered on the CUDA backend's streams,
// control plane (host vectors) over the MPI communicator the NCCL communicator was bootstrapped from.
#pragma once
#include <mpi.h>
#include <nccl.h>

#include <map>
#include <memory>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cuda/cuda_compute.hpp"

namespace moe {

class NcclComm final : public Comm {
 public:
  // Collective over the ranks of `mpi_comm`, which this object takes over (and frees). Rank 0
  // creates the NCCL unique id and broadcasts it; every rank then joins with its MPI rank, so
  // group ranks agree between the control and the data plane. `backend` must outlive this object.
  NcclComm(CudaComputeBackend& backend, MPI_Comm mpi_comm, std::shared_ptr<TrafficCounters> traffic);
  ~NcclComm() override;
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  // Communicator over MPI_COMM_WORLD (duplicated) with fresh traffic counters. Collective.
  static std::unique_ptr<NcclComm> world(CudaComputeBackend& backend);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int world_rank_of(int group_rank) const override { return world_ranks_.at(group_rank); }

  void all_reduce_sum(const Mat& x, Stream s) override;
  void all_to_all_v(const Mat& send, const std::vector<int64_t>& send_rows, const Mat& recv,
                    const std::vector<int64_t>& recv_rows, Stream s) override;
  void send(const Mat& x, int peer, Stream s) override;
  void recv(const Mat& x, int peer, Stream s) override;

  // Posted transfers run on the send stream (all-to-all, sends) or the receive stream (receives),
  // after an event of the caller's stream; completion is an event the waiter's stream waits for.
  // One NCCL group cannot report per-peer arrival, so wait_next_source completes the whole
  // exchange first and then hands out the sources in rank order.
  CommHandle post_all_to_all_v(const Mat& send, const std::vector<int64_t>& send_rows, const Mat& recv,
                               const std::vector<int64_t>& recv_rows, Stream s) override;
  CommHandle post_send(const Mat& x, int peer, Stream s) override;
  CommHandle post_recv(const Mat& x, int peer, Stream s) override;
  Event wait(CommHandle h, Stream waiter) override;
  int wait_next_source(CommHandle h, Stream waiter, Event* done) override;

  std::vector<int64_t> all_to_all_counts(const std::vector<int64_t>& send, int per_peer) override;
  void all_reduce_sum_host(std::vector<int64_t>& values) override;
  void all_reduce_max_host(std::vector<double>& values) override;
  void all_reduce_sum_host(std::vector<double>& values) override;
  std::vector<int64_t> exclusive_scan_host(const std::vector<int64_t>& values) override;
  void broadcast_host(std::vector<float>& values, int root) override;
  std::vector<float> gather_host(const std::vector<float>& values, int root) override;
  std::vector<double> gather_host(const std::vector<double>& values, int root) override;
  void barrier() override;

  // MPI_Comm_split plus a new NCCL communicator over the sub-group. color must be >= 0.
  std::unique_ptr<Comm> split(int color, int key) override;
  TrafficCounters& traffic() override { return *traffic_; }

  // Throws (after aborting the communicator) if NCCL reported an asynchronous error, e.g. a peer
  // died or a network link failed. Called by the backend while it waits on a stream.
  void check_async_error();

 private:
  void check_data(const Mat& x, const char* op) const;
  ncclDataType_t nccl_type() const;
  void abort_communicator() noexcept;
  void issue_all_to_all_v(const Mat& send, const std::vector<int64_t>& send_rows, const Mat& recv,
                          const std::vector<int64_t>& recv_rows, cudaStream_t st);
  CommHandle posted(Event done, std::vector<int> sources);

  struct Posted {
    Event done;                 // recorded on the communication stream after the transfer
    std::vector<int> sources;   // group ranks with rows to receive, in rank order
    size_t next = 0;
    bool waited = false;
  };
  std::map<int, Posted> posted_;
  int next_handle_ = 0;

  CudaComputeBackend& backend_;
  MPI_Comm mpi_ = MPI_COMM_NULL;
  ncclComm_t nccl_ = nullptr;
  std::shared_ptr<TrafficCounters> traffic_;
  int rank_ = 0;
  int size_ = 1;
  std::vector<int> world_ranks_;  // [size] world rank of each group rank
  int poll_id_ = -1;
  int abort_hook_id_ = -1;   // watchdog abort hook: ncclCommAbort before the job is aborted
  bool failed_ = false;
};

}  // namespace moe
