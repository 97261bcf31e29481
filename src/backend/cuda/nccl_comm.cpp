// NcclComm: NCCL bootstrap over MPI, the device data plane (all-reduce, grouped send/recv
// all-to-all-v, point-to-point), async-error polling, and the MPI host control plane.
#include "backend/cuda/nccl_comm.hpp"

#include "backend/mpi_gather.hpp"

#include <algorithm>
#include <climits>
#include <exception>
#include <numeric>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/launch_math.hpp"
#include "core/error.hpp"
#include "core/watchdog.hpp"
#include "core/mpi_session.hpp"

namespace moe {
namespace {

int mpi_count(int64_t n) {
  MOE_REQUIRE(n >= 0 && n <= INT_MAX, "MPI message of " + std::to_string(n) + " elements exceeds the int count limit");
  return static_cast<int>(n);
}

}  // namespace

NcclComm::NcclComm(CudaComputeBackend& backend, MPI_Comm mpi_comm, std::shared_ptr<TrafficCounters> traffic)
    : backend_(backend), mpi_(mpi_comm), traffic_(std::move(traffic)) {
  try {
    MOE_REQUIRE(mpi_ != MPI_COMM_NULL, "NcclComm needs a valid MPI communicator");
    MOE_MPI_CHECK(MPI_Comm_set_errhandler(mpi_, MPI_ERRORS_RETURN));
    MOE_MPI_CHECK(MPI_Comm_rank(mpi_, &rank_));
    MOE_MPI_CHECK(MPI_Comm_size(mpi_, &size_));
    MPI_Group group, world_group;
    MOE_MPI_CHECK(MPI_Comm_group(mpi_, &group));
    MOE_MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world_group));
    std::vector<int> mine(size_);
    std::iota(mine.begin(), mine.end(), 0);
    world_ranks_.assign(size_, -1);
    const int trc = MPI_Group_translate_ranks(group, size_, mine.data(), world_group, world_ranks_.data());
    MPI_Group_free(&group);
    MPI_Group_free(&world_group);
    MOE_MPI_CHECK(trc);

    MOE_CUDA_CHECK(cudaSetDevice(backend_.device()));  // NCCL binds the communicator to the current device
    // Rank 0's id call result travels with the id, so a failure there fails every rank alike.
    int id_rc = ncclSuccess;
    ncclUniqueId id{};
    if (rank_ == 0) id_rc = ncclGetUniqueId(&id);
    MOE_MPI_CHECK(MPI_Bcast(&id_rc, 1, MPI_INT, 0, mpi_));
    MOE_MPI_CHECK(MPI_Bcast(&id, static_cast<int>(sizeof(id)), MPI_BYTE, 0, mpi_));
    if (id_rc != ncclSuccess)
      throw_nccl_error(static_cast<ncclResult_t>(id_rc), "ncclGetUniqueId (on group rank 0)", __FILE__, __LINE__);

    const ncclResult_t init = ncclCommInitRank(&nccl_, size_, id, rank_);
    int ok = init == ncclSuccess ? 1 : 0;
    MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, mpi_));
    if (init != ncclSuccess) throw_nccl_error(init, "ncclCommInitRank", __FILE__, __LINE__);
    if (!ok) throw Error("NCCL communicator setup failed on another rank of this group");
    int nccl_rank = -1, nccl_size = -1;
    MOE_NCCL_CHECK_COMM(ncclCommUserRank(nccl_, &nccl_rank), nccl_);
    MOE_NCCL_CHECK_COMM(ncclCommCount(nccl_, &nccl_size), nccl_);
    MOE_REQUIRE(nccl_rank == rank_ && nccl_size == size_, "NCCL and MPI disagree on group rank or size");
    poll_id_ = backend_.add_sync_poll([this] { check_async_error(); });
    abort_hook_id_ = watchdog::add_abort_hook([this](const std::string&) { abort_communicator(); });  // before MPI_Abort
  } catch (...) {
    if (nccl_ != nullptr) ncclCommAbort(nccl_), nccl_ = nullptr;
    if (mpi_ != MPI_COMM_NULL) MPI_Comm_free(&mpi_);
    throw;
  }
}

NcclComm::~NcclComm() {
  if (poll_id_ >= 0) backend_.remove_sync_poll(poll_id_);
  if (abort_hook_id_ >= 0) watchdog::remove_abort_hook(abort_hook_id_);
  if (nccl_ != nullptr) {
    // While an exception unwinds, peers may never reach a matching destroy: abort (local) instead.
    if (std::uncaught_exceptions() > 0)
      ncclCommAbort(nccl_);
    else
      ncclCommDestroy(nccl_);
    nccl_ = nullptr;
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (mpi_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&mpi_);
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

void NcclComm::abort_communicator() noexcept {
  if (nccl_ != nullptr) ncclCommAbort(nccl_);
  nccl_ = nullptr;
  failed_ = true;
}

void NcclComm::check_async_error() {
  const std::string where = "NCCL communicator (group rank " + std::to_string(rank_) + " of " + std::to_string(size_) +
                            ", world rank " + std::to_string(world_ranks_.at(rank_)) + ")";
  if (nccl_ == nullptr) {
    if (failed_) throw Error(where + " was aborted after an earlier error");
    return;
  }
  ncclResult_t state = ncclSuccess;
  const ncclResult_t rc = ncclCommGetAsyncError(nccl_, &state);
  if (rc != ncclSuccess) state = rc;
  if (state == ncclSuccess || state == ncclInProgress) return;
  const char* last = ncclGetLastError(nccl_);
  const std::string detail = (last != nullptr && last[0] != '\0') ? std::string(" (") + last + ")" : "";
  abort_communicator();
  throw Error(where + " failed: " + ncclGetErrorString(state) + detail +
              "; communicator aborted (a peer rank or a network link probably failed)");
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
  if (size_ == 1 || x.elements() == 0) return;
  check_async_error();
  MOE_NCCL_CHECK_COMM(ncclAllReduce(x.data, x.data, static_cast<size_t>(x.elements()), nccl_type(), ncclSum, nccl_,
                                    backend_.stream(s)),
                      nccl_);
  // Ring all-reduce cost: each rank sends 2 (n-1)/n of the buffer, to its ring neighbour.
  traffic_->add(world_rank_of((rank_ + 1) % size_), 2 * x.bytes() * (size_ - 1) / size_);
}

void NcclComm::issue_all_to_all_v(const Mat& send, const std::vector<int64_t>& send_rows, const Mat& recv,
                                  const std::vector<int64_t>& recv_rows, cudaStream_t st) {
  check_data(send, "all_to_all_v send");
  check_data(recv, "all_to_all_v recv");
  MOE_REQUIRE(static_cast<int>(send_rows.size()) == size_ && static_cast<int>(recv_rows.size()) == size_,
              "all_to_all_v: counts must have one entry per rank");
  MOE_REQUIRE(send.cols == recv.cols, "all_to_all_v: send and receive row widths differ");
  int64_t send_total = 0, recv_total = 0;
  for (int p = 0; p < size_; ++p) {
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
  // throwing so NCCL's group state stays consistent.
  ncclResult_t first = ncclSuccess;
  const char* first_call = "";
  auto note = [&](ncclResult_t r, const char* call) {
    if (r != ncclSuccess && first == ncclSuccess) first = r, first_call = call;
  };
  MOE_NCCL_CHECK_COMM(ncclGroupStart(), nccl_);
  int64_t send_off = 0, recv_off = 0;
  for (int p = 0; p < size_; ++p) {
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
  note(ncclGroupEnd(), "ncclGroupEnd");
  if (first != ncclSuccess) throw_nccl_error(first, first_call, __FILE__, __LINE__, nccl_);
  for (int p = 0; p < size_; ++p)
    if (p != rank_) traffic_->add(world_rank_of(p), send_rows[p] * row_bytes);
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
  for (int p = 0; p < size_; ++p)
    if (recv_rows.at(p) > 0 || p == rank_) sources.push_back(p);
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
  MOE_REQUIRE(peer >= 0 && peer < size_ && peer != rank_, "send: peer " + std::to_string(peer) + " is not another rank");
  if (x.elements() == 0) return;
  check_async_error();
  MOE_NCCL_CHECK_COMM(ncclSend(x.data, static_cast<size_t>(x.elements()), nccl_type(), peer, nccl_, backend_.stream(s)),
                      nccl_);
  traffic_->add(world_rank_of(peer), x.bytes());
}

void NcclComm::recv(const Mat& x, int peer, Stream s) {
  check_data(x, "recv");
  MOE_REQUIRE(peer >= 0 && peer < size_ && peer != rank_, "recv: peer " + std::to_string(peer) + " is not another rank");
  if (x.elements() == 0) return;
  check_async_error();
  MOE_NCCL_CHECK_COMM(ncclRecv(x.data, static_cast<size_t>(x.elements()), nccl_type(), peer, nccl_, backend_.stream(s)),
                      nccl_);
}

// ---- control plane (MPI, blocking) ----

std::vector<int64_t> NcclComm::all_to_all_counts(const std::vector<int64_t>& send, int per_peer) {
  BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
  MOE_REQUIRE(per_peer > 0 && static_cast<int64_t>(send.size()) == int64_t(size_) * per_peer,
              "all_to_all_counts: need per_peer counts for every rank");
  std::vector<int64_t> out(send.size());
  MOE_MPI_CHECK(MPI_Alltoall(send.data(), per_peer, MPI_INT64_T, out.data(), per_peer, MPI_INT64_T, mpi_));
  return out;
}

void NcclComm::all_reduce_sum_host(std::vector<int64_t>& v) {
  BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
  if (!v.empty()) MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v.data(), mpi_count(v.size()), MPI_INT64_T, MPI_SUM, mpi_));
}

void NcclComm::all_reduce_max_host(std::vector<double>& v) {
  BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
  if (!v.empty()) MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v.data(), mpi_count(v.size()), MPI_DOUBLE, MPI_MAX, mpi_));
}

void NcclComm::all_reduce_sum_host(std::vector<double>& v) {
  BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
  if (!v.empty()) MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v.data(), mpi_count(v.size()), MPI_DOUBLE, MPI_SUM, mpi_));
}

std::vector<int64_t> NcclComm::exclusive_scan_host(const std::vector<int64_t>& v) {
  BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
  std::vector<int64_t> out(v.size(), 0);
  if (!v.empty()) MOE_MPI_CHECK(MPI_Exscan(v.data(), out.data(), mpi_count(v.size()), MPI_INT64_T, MPI_SUM, mpi_));
  if (rank_ == 0) std::fill(out.begin(), out.end(), 0);  // MPI leaves rank 0's result undefined
  return out;
}

void NcclComm::broadcast_host(std::vector<float>& v, int root) {
  BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
  MOE_REQUIRE(root >= 0 && root < size_, "broadcast_host: root outside the group");
  int64_t n = static_cast<int64_t>(v.size());
  MOE_MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT64_T, root, mpi_));
  v.resize(static_cast<size_t>(n));
  if (n > 0) MOE_MPI_CHECK(MPI_Bcast(v.data(), mpi_count(n), MPI_FLOAT, root, mpi_));
}

std::vector<float> NcclComm::gather_host(const std::vector<float>& v, int root) {
  BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
  return mpi_gather_host(mpi_, v, MPI_FLOAT, root);
}

std::vector<double> NcclComm::gather_host(const std::vector<double>& v, int root) {
  BlockingWait wait(world_ranks_);
  return mpi_gather_host(mpi_, v, MPI_DOUBLE, root);
}

void NcclComm::barrier() {
  BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
  MOE_MPI_CHECK(MPI_Barrier(mpi_));
}

std::unique_ptr<Comm> NcclComm::split(int color, int key) {
  BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
  MOE_REQUIRE(color >= 0, "split: color must be non-negative");
  MPI_Comm sub = MPI_COMM_NULL;
  MOE_MPI_CHECK(MPI_Comm_split(mpi_, color, key, &sub));
  return std::make_unique<NcclComm>(backend_, sub, traffic_);
}

}  // namespace moe
