// NcclComm: non-blocking NCCL creation (unique id over MPI, or ncclCommSplit), the device data plane
// (all-reduce, grouped send/recv all-to-all-v, point-to-point) and failure handling that ends the
// job without unwinding. The host control plane is MpiControlPlane's.
#include "backend/cuda/nccl_comm.hpp"

#include <algorithm>
#include <climits>
#include <exception>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launch_math.hpp"
#include "backend/wait_policy.hpp"
#include "core/error.hpp"
#include "core/mpi_session.hpp"
#include "core/watchdog.hpp"

namespace moe {

NcclComm::NcclComm(CudaComputeBackend& backend, MPI_Comm mpi_comm, std::shared_ptr<TrafficCounters> traffic,
                   ncclComm_t parent, int color, int key)
    : MpiControlPlane(mpi_comm), backend_(backend), traffic_(std::move(traffic)) {
  MOE_CUDA_CHECK(cudaSetDevice(backend_.device()));  // NCCL binds the communicator to the current device
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // creation returns at once and is polled: a failed peer cannot hang this rank
  // Registered before creation, so that a failure anywhere (or the watchdog) aborts this one too.
  abort_hook_id_ = watchdog::add_abort_hook([this](const std::string&) { abort_communicator(); });
  if (parent == nullptr) {
    // Rank 0's id call result travels with the id, so a failure there fails every rank alike.
    int id_rc = ncclSuccess;
    ncclUniqueId id{};
    if (rank() == 0) id_rc = ncclGetUniqueId(&id);
    {
      BlockingWait wait(world_ranks());  // bounded by run.timeout_s
      MOE_MPI_CHECK(MPI_Bcast(&id_rc, 1, MPI_INT, 0, mpi()));
      MOE_MPI_CHECK(MPI_Bcast(&id, static_cast<int>(sizeof(id)), MPI_BYTE, 0, mpi()));
    }
    if (id_rc != ncclSuccess) fail(std::string("ncclGetUniqueId (on group rank 0): ") + ncclGetErrorString(ncclResult_t(id_rc)));
    check(ncclCommInitRankConfig(&nccl_, size(), id, rank(), &config), "ncclCommInitRankConfig");
  } else {
    check(ncclCommSplit(parent, color, key, &nccl_, &config), "ncclCommSplit");
  }
  if (nccl_ == nullptr) fail("NCCL returned no communicator");
  int nccl_rank = -1, nccl_size = -1;
  check(ncclCommUserRank(nccl_, &nccl_rank), "ncclCommUserRank");
  check(ncclCommCount(nccl_, &nccl_size), "ncclCommCount");
  if (nccl_rank != rank() || nccl_size != size())
    fail("NCCL and MPI disagree on group rank or size (NCCL " + std::to_string(nccl_rank) + " of " +
         std::to_string(nccl_size) + ")");
  poll_id_ = backend_.add_sync_poll([this] { check_async_error(); });
}

NcclComm::~NcclComm() {
  if (poll_id_ >= 0) backend_.remove_sync_poll(poll_id_);
  if (abort_hook_id_ >= 0) watchdog::remove_abort_hook(abort_hook_id_);
  if (nccl_ == nullptr) return;
  // While an exception unwinds, peers may never reach a matching finalize: abort (local) instead.
  if (!device_teardown_may_wait()) {
    ncclCommAbort(nccl_);
  } else {
    // Finalize flushes this rank's operations (polled: the communicator is non-blocking).
    ncclResult_t rc = ncclCommFinalize(nccl_);
    if (rc == ncclInProgress) {
      const WaitResult r = poll_until(Deadline::from_now(watchdog::timeout_s()), [&] {
        ncclResult_t state = ncclSuccess;
        if (ncclCommGetAsyncError(nccl_, &state) != ncclSuccess) return PollState::failed;
        return state == ncclInProgress ? PollState::pending : state == ncclSuccess ? PollState::done : PollState::failed;
      });
      rc = r == WaitResult::done ? ncclSuccess : ncclInternalError;
    }
    if (rc == ncclSuccess) ncclCommDestroy(nccl_); else ncclCommAbort(nccl_);
  }
  nccl_ = nullptr;
}

std::unique_ptr<NcclComm> NcclComm::world(CudaComputeBackend& backend) {
  MPI_Comm dup = MPI_COMM_NULL;
  MOE_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &dup));
  int world_size = 0;
  MOE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size));
  auto traffic = std::make_shared<TrafficCounters>();
  traffic->bytes_to_rank.assign(world_size, 0);
  return std::make_unique<NcclComm>(backend, dup, traffic);
}

std::string NcclComm::where() const {
  return "NCCL communicator (group rank " + std::to_string(rank()) + " of " + std::to_string(size()) + ", world rank " +
         std::to_string(world_rank_of(rank())) + ")";
}

void NcclComm::abort_communicator() noexcept {
  if (nccl_ != nullptr) ncclCommAbort(nccl_);
  nccl_ = nullptr;
  failed_ = true;
}

void NcclComm::fail(const std::string& what) {
  // abort_job prints, runs every abort hook (each registered communicator's ncclCommAbort, rank 0's
  // partial results) and calls MPI_Abort; no destructor runs, so none waits on a stuck kernel.
  watchdog::abort_job("[rank " + std::to_string(watchdog::world_rank()) + "] " + where() + ": " + what +
                          "; every communicator aborted (a peer rank or a network link probably failed)",
                      1);
}

void NcclComm::await_ready(const char* call) {
  ncclResult_t last = ncclSuccess;
  const Deadline deadline = Deadline::from_now(watchdog::timeout_s());
  const WaitResult r = poll_until(deadline, [&] {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(nccl_, &state);
    last = rc != ncclSuccess ? rc : state;
    return last == ncclInProgress ? PollState::pending : last == ncclSuccess ? PollState::done : PollState::failed;
  });
  if (r == WaitResult::expired)
    fail(std::string(call) + " did not complete within " + std::to_string(deadline.limit_s()) + " s (run.timeout_s)");
  if (r == WaitResult::failed) {
    const char* text = ncclGetLastError(nccl_);
    fail(std::string(call) + " failed: " + ncclGetErrorString(last) + (text && text[0] ? std::string(" (") + text + ")" : ""));
  }
}

void NcclComm::check(ncclResult_t rc, const char* call) {
  if (rc == ncclSuccess) return;
  if (rc == ncclInProgress && nccl_ != nullptr) return await_ready(call);
  const char* text = nccl_ != nullptr ? ncclGetLastError(nccl_) : nullptr;
  fail(std::string(call) + " failed: " + ncclGetErrorString(rc) + (text && text[0] ? std::string(" (") + text + ")" : ""));
}

void NcclComm::check_async_error() {
  if (nccl_ == nullptr) {
    if (failed_) fail("used after it was aborted");
    return;
  }
  ncclResult_t state = ncclSuccess;
  const ncclResult_t rc = ncclCommGetAsyncError(nccl_, &state);
  if (rc != ncclSuccess) state = rc;
  if (state == ncclSuccess || state == ncclInProgress) return;
  const char* last = ncclGetLastError(nccl_);
  fail(std::string("asynchronous error: ") + ncclGetErrorString(state) +
       ((last != nullptr && last[0] != '\0') ? std::string(" (") + last + ")" : ""));
}

ncclDataType_t NcclComm::nccl_type() const {
  switch (backend_.dtype()) {
    case DType::f32: return ncclFloat32;
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
  }
  MOE_REQUIRE(false, "unknown dtype");
  return ncclFloat32;
}

void NcclComm::check_data(const Mat& x, const char* op) const {
  const std::string problem = cuda::check_mat(x, backend_.dtype(), op);
  MOE_REQUIRE(problem.empty(), problem);
  if (nccl_ == nullptr) throw Error(std::string(op) + ": the NCCL communicator was aborted after an earlier error");
}

// ---- data plane ----

void NcclComm::all_reduce_sum(const Mat& x, Stream s) {
  check_data(x, "all_reduce_sum");
  if (size() == 1 || x.elements() == 0) return;
  check_async_error();
  check(ncclAllReduce(x.data, x.data, static_cast<size_t>(x.elements()), nccl_type(), ncclSum, nccl_, backend_.stream(s)),
        "ncclAllReduce");
  // Ring all-reduce cost: each rank sends 2 (n-1)/n of the buffer, to its ring neighbour.
  traffic_->add(world_rank_of((rank() + 1) % size()), 2 * x.bytes() * (size() - 1) / size());
}

void NcclComm::issue_all_to_all_v(const Mat& send, const std::vector<int64_t>& send_rows, const Mat& recv,
                                  const std::vector<int64_t>& recv_rows, cudaStream_t st) {
  check_data(send, "all_to_all_v send");
  check_data(recv, "all_to_all_v recv");
  MOE_REQUIRE(static_cast<int>(send_rows.size()) == size() && static_cast<int>(recv_rows.size()) == size(),
              "all_to_all_v: counts must have one entry per rank");
  MOE_REQUIRE(send.cols == recv.cols, "all_to_all_v: send and receive row widths differ");
  int64_t send_total = 0, recv_total = 0;
  for (int p = 0; p < size(); ++p) {
    MOE_REQUIRE(send_rows[p] >= 0 && recv_rows[p] >= 0, "all_to_all_v: negative row count");
    send_total += send_rows[p];
    recv_total += recv_rows[p];
  }
  MOE_REQUIRE(send_total <= send.rows, "all_to_all_v: send counts exceed the send buffer");
  MOE_REQUIRE(recv_total <= recv.rows, "all_to_all_v: receive counts exceed the receive buffer");
  check_async_error();
  const int64_t row_bytes = send.cols * dtype_bytes(backend_.dtype());
  const ncclDataType_t type = nccl_type();
  // Every call between group start and end is collected; the group is always closed before
  // failing so NCCL's group state stays consistent. ncclInProgress (non-blocking communicator) is
  // not an error: the group end's result settles it.
  ncclResult_t first = ncclSuccess;
  const char* first_call = "";
  auto note = [&](ncclResult_t r, const char* call) {
    if (r != ncclSuccess && r != ncclInProgress && first == ncclSuccess) first = r, first_call = call;
  };
  check(ncclGroupStart(), "ncclGroupStart");
  int64_t send_off = 0, recv_off = 0;
  for (int p = 0; p < size(); ++p) {
    if (send_rows[p] > 0)
      note(ncclSend(static_cast<const char*>(send.data) + send_off * row_bytes, static_cast<size_t>(send_rows[p] * send.cols),
                    type, p, nccl_, st),
           "ncclSend");
    if (recv_rows[p] > 0)
      note(ncclRecv(static_cast<char*>(recv.data) + recv_off * row_bytes, static_cast<size_t>(recv_rows[p] * recv.cols),
                    type, p, nccl_, st),
           "ncclRecv");
    send_off += send_rows[p];
    recv_off += recv_rows[p];
  }
  const ncclResult_t end = ncclGroupEnd();
  check(first != ncclSuccess ? first : end, first != ncclSuccess ? first_call : "ncclGroupEnd");
  for (int p = 0; p < size(); ++p)
    if (p != rank()) traffic_->add(world_rank_of(p), send_rows[p] * row_bytes);
}

void NcclComm::all_to_all_v(const Mat& send, const std::vector<int64_t>& send_rows, const Mat& recv,
                            const std::vector<int64_t>& recv_rows, Stream s) {
  issue_all_to_all_v(send, send_rows, recv, recv_rows, backend_.stream(s));
}

CommHandle NcclComm::posted(Event done, std::vector<int> sources) {
  const int id = next_handle_++;
  posted_[id] = Posted{done, std::move(sources), 0, false};
  return CommHandle{id};
}

CommHandle NcclComm::post_all_to_all_v(const Mat& send, const std::vector<int64_t>& send_rows, const Mat& recv,
                                       const std::vector<int64_t>& recv_rows, Stream s) {
  backend_.wait(Stream::send, backend_.record(s));  // the rows to send were produced on `s`
  issue_all_to_all_v(send, send_rows, recv, recv_rows, backend_.stream(Stream::send));
  std::vector<int> sources;
  for (int p = 0; p < size(); ++p)
    if (recv_rows.at(p) > 0 || p == rank()) sources.push_back(p);
  return posted(backend_.record(Stream::send), std::move(sources));
}

CommHandle NcclComm::post_send(const Mat& x, int peer, Stream s) {
  backend_.wait(Stream::send, backend_.record(s));
  send(x, peer, Stream::send);
  return posted(backend_.record(Stream::send), {});
}

CommHandle NcclComm::post_recv(const Mat& x, int peer, Stream s) {
  backend_.wait(Stream::recv, backend_.record(s));  // the buffer is free once earlier work on `s` is done
  recv(x, peer, Stream::recv);
  return posted(backend_.record(Stream::recv), {peer});
}

Event NcclComm::wait(CommHandle h, Stream waiter) {
  auto it = posted_.find(h.id);
  MOE_REQUIRE(it != posted_.end(), "unknown or already completed transfer handle " + std::to_string(h.id));
  const Event done = it->second.done;
  backend_.wait(waiter, done);
  posted_.erase(it);
  return done;
}

int NcclComm::wait_next_source(CommHandle h, Stream waiter, Event* done) {
  auto it = posted_.find(h.id);
  MOE_REQUIRE(it != posted_.end(), "unknown or already completed transfer handle " + std::to_string(h.id));
  Posted& p = it->second;
  if (!p.waited) {
    backend_.wait(waiter, p.done);
    p.waited = true;
  }
  if (p.next < p.sources.size()) return p.sources[p.next++];
  if (done) *done = p.done;
  posted_.erase(it);
  return -1;
}

void NcclComm::send(const Mat& x, int peer, Stream s) {
  check_data(x, "send");
  MOE_REQUIRE(peer >= 0 && peer < size() && peer != rank(), "send: peer " + std::to_string(peer) + " is not another rank");
  if (x.elements() == 0) return;
  check_async_error();
  check(ncclSend(x.data, static_cast<size_t>(x.elements()), nccl_type(), peer, nccl_, backend_.stream(s)), "ncclSend");
  traffic_->add(world_rank_of(peer), x.bytes());
}

void NcclComm::recv(const Mat& x, int peer, Stream s) {
  check_data(x, "recv");
  MOE_REQUIRE(peer >= 0 && peer < size() && peer != rank(), "recv: peer " + std::to_string(peer) + " is not another rank");
  if (x.elements() == 0) return;
  check_async_error();
  check(ncclRecv(x.data, static_cast<size_t>(x.elements()), nccl_type(), peer, nccl_, backend_.stream(s)), "ncclRecv");
}

std::unique_ptr<Comm> NcclComm::split(int color, int key) {
  MOE_REQUIRE(color >= 0, "split: color must be non-negative");
  MOE_REQUIRE(nccl_ != nullptr, "split: the NCCL communicator was aborted after an earlier error");
  // Both splits order the new ranks by (key, parent rank), so control and data plane agree.
  MPI_Comm sub = split_mpi(color, key);
  BlockingWait wait(world_ranks());  // ncclCommSplit is collective over this group
  return std::make_unique<NcclComm>(backend_, sub, traffic_, nccl_, color, key);
}

}  // namespace moe
