// NCCL implementation of Comm: data plane on device buffers ordered on the CUDA backend's streams,
// control plane (host vectors) over the MPI communicator of the same group (MpiControlPlane).
// Communicators are non-blocking (config.blocking = 0): creation and every call that returns
// ncclInProgress are polled against run.timeout_s, so no rank can wait inside NCCL forever. Any
// communication failure ends the job through watchdog::abort_job, which aborts every registered
// communicator and then calls MPI_Abort: nothing unwinds into destructors that wait on the device.
#pragma once
#include <mpi.h>
#include <nccl.h>

#include <map>
#include <memory>
#include <vector>

#include "backend/backend.hpp"
#include "backend/mpi_control.hpp"
#include "backend/cuda/cuda_compute.hpp"

namespace moe {

class NcclComm final : public MpiControlPlane {
 public:
  // Collective over the ranks of `mpi_comm`, which this object takes over (and frees). With no
  // `parent`, rank 0 creates the NCCL unique id and broadcasts it and every rank joins with its MPI
  // rank (ncclCommInitRankConfig); with a parent, the communicator is ncclCommSplit(parent, color,
  // key), which orders ranks as MPI_Comm_split does. Either way group ranks agree between the
  // control and the data plane. `backend` must outlive this object.
  NcclComm(CudaComputeBackend& backend, MPI_Comm mpi_comm, std::shared_ptr<TrafficCounters> traffic,
           ncclComm_t parent = nullptr, int color = 0, int key = 0);
  ~NcclComm() override;
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  // Communicator over MPI_COMM_WORLD (duplicated) with fresh traffic counters. Collective.
  static std::unique_ptr<NcclComm> world(CudaComputeBackend& backend);

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

  // MPI_Comm_split for the control plane plus ncclCommSplit for the data plane. color must be >= 0.
  std::unique_ptr<Comm> split(int color, int key) override;
  TrafficCounters& traffic() override { return *traffic_; }

  // Ends the job (abort_job) if NCCL reported an asynchronous error, e.g. a peer died or a network
  // link failed. Called by the backend while it waits on a stream.
  void check_async_error();

 private:
  void check_data(const Mat& x, const char* op) const;
  ncclDataType_t nccl_type() const;
  void abort_communicator() noexcept;
  // ncclSuccess: done; ncclInProgress: poll until the communicator is ready; else end the job.
  void check(ncclResult_t rc, const char* call);
  void await_ready(const char* call);
  [[noreturn]] void fail(const std::string& what);
  std::string where() const;
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
  ncclComm_t nccl_ = nullptr;
  std::shared_ptr<TrafficCounters> traffic_;
  int poll_id_ = -1;
  int abort_hook_id_ = -1;   // watchdog abort hook: ncclCommAbort before the job is aborted
  bool failed_ = false;
};

}  // namespace moe
