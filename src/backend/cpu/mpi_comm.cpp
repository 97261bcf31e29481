// Comm over MPI: MPI_Allreduce / MPI_Alltoallv / MPI_Send / MPI_Recv on fp32 host buffers, posted
// transfers as per-peer MPI_Isend / MPI_Irecv (mpi_transfers.hpp), plus the host control plane.
// Bytes sent to each world rank are counted for the traffic report.
#include "backend/cpu/mpi_comm.hpp"

#include <mpi.h>

#include <cstdlib>
#include <cstring>
#include <numeric>

#include "backend/cpu/mpi_transfers.hpp"
#include "backend/mpi_gather.hpp"

#include "core/error.hpp"
#include "core/mpi_session.hpp"
#include "core/watchdog.hpp"

namespace moe {
namespace {

class MpiComm : public Comm {
 public:
  MpiComm(MPI_Comm comm, std::shared_ptr<TrafficCounters> traffic, std::shared_ptr<MpiTransfers> transfers)
      : comm_(comm), traffic_(std::move(traffic)), transfers_(std::move(transfers)) {
    MOE_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    MOE_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MOE_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    // Map group ranks to world ranks once.
    MPI_Group group, world_group;
    MOE_MPI_CHECK(MPI_Comm_group(comm_, &group));
    MOE_MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world_group));
    std::vector<int> mine(size_), world(size_);
    std::iota(mine.begin(), mine.end(), 0);
    MOE_MPI_CHECK(MPI_Group_translate_ranks(group, size_, mine.data(), world_group, world.data()));
    MPI_Group_free(&group);
    MPI_Group_free(&world_group);
    world_ranks_ = world;
  }
  ~MpiComm() override {
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int world_rank_of(int group_rank) const override { return world_ranks_.at(group_rank); }

  void all_reduce_sum(const Mat& x, Stream) override {
    BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
    check_f32(x);
    if (size_ == 1 || x.elements() == 0) return;
    MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, x.data, count(x.elements()), MPI_FLOAT, MPI_SUM, comm_));
    // Ring all-reduce cost: each rank sends 2 (n-1)/n of the buffer, to its ring neighbour.
    const int64_t bytes = 2 * x.bytes() * (size_ - 1) / size_;
    traffic_->add(world_rank_of((rank_ + 1) % size_), bytes);
  }

  void all_to_all_v(const Mat& send, const std::vector<int64_t>& send_rows, const Mat& recv,
                    const std::vector<int64_t>& recv_rows, Stream) override {
    BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
    check_f32(send);
    check_f32(recv);
    MOE_REQUIRE(static_cast<int>(send_rows.size()) == size_ && static_cast<int>(recv_rows.size()) == size_,
                "all_to_all_v: counts must have one entry per rank");
    MOE_REQUIRE(send.cols == recv.cols, "all_to_all_v: send and receive row widths differ");
    const int64_t cols = send.cols;
    std::vector<int> scount(size_), sdispl(size_), rcount(size_), rdispl(size_);
    int64_t soff = 0, roff = 0;
    for (int p = 0; p < size_; ++p) {
      scount[p] = count(send_rows[p] * cols);
      sdispl[p] = count(soff * cols);
      rcount[p] = count(recv_rows[p] * cols);
      rdispl[p] = count(roff * cols);
      soff += send_rows[p];
      roff += recv_rows[p];
      if (p != rank_) traffic_->add(world_rank_of(p), send_rows[p] * cols * 4);
    }
    MOE_REQUIRE(soff <= send.rows, "all_to_all_v: send counts exceed the send buffer");
    MOE_REQUIRE(roff <= recv.rows, "all_to_all_v: receive counts exceed the receive buffer");
    MOE_MPI_CHECK(MPI_Alltoallv(send.data, scount.data(), sdispl.data(), MPI_FLOAT, recv.data, rcount.data(),
                                rdispl.data(), MPI_FLOAT, comm_));
  }

  void send(const Mat& x, int peer, Stream) override {
    BlockingWait wait(world_rank_of(peer));  // bounded by run.timeout_s
    check_f32(x);
    MOE_MPI_CHECK(MPI_Send(x.data, count(x.elements()), MPI_FLOAT, peer, kDataTag, comm_));
    traffic_->add(world_rank_of(peer), x.bytes());
  }
  void recv(const Mat& x, int peer, Stream) override {
    BlockingWait wait(world_rank_of(peer));  // bounded by run.timeout_s
    check_f32(x);
    MOE_MPI_CHECK(MPI_Recv(x.data, count(x.elements()), MPI_FLOAT, peer, kDataTag, comm_, MPI_STATUS_IGNORE));
  }

  CommHandle post_all_to_all_v(const Mat& send, const std::vector<int64_t>& send_rows, const Mat& recv,
                               const std::vector<int64_t>& recv_rows, Stream) override {
    check_f32(send);
    check_f32(recv);
    MOE_REQUIRE(static_cast<int>(send_rows.size()) == size_ && static_cast<int>(recv_rows.size()) == size_,
                "post_all_to_all_v: counts must have one entry per rank");
    MOE_REQUIRE(send.cols == recv.cols, "post_all_to_all_v: send and receive row widths differ");
    const int64_t cols = send.cols;
    const float* sbase = static_cast<const float*>(send.data);
    float* rbase = static_cast<float*>(recv.data);
    std::vector<int64_t> soff(size_ + 1, 0), roff(size_ + 1, 0);
    for (int p = 0; p < size_; ++p) {
      MOE_REQUIRE(send_rows[p] >= 0 && recv_rows[p] >= 0, "post_all_to_all_v: negative row count");
      soff[p + 1] = soff[p] + send_rows[p];
      roff[p + 1] = roff[p] + recv_rows[p];
    }
    MOE_REQUIRE(soff[size_] <= send.rows, "post_all_to_all_v: send counts exceed the send buffer");
    MOE_REQUIRE(roff[size_] <= recv.rows, "post_all_to_all_v: receive counts exceed the receive buffer");
    MOE_REQUIRE(send_rows[rank_] == recv_rows[rank_], "post_all_to_all_v: rows to self differ from rows from self");
    MpiTransfers::Posted t;
    // Receives first (peers after this rank first, so that the ranks do not all start on rank 0).
    for (int i = 1; i < size_; ++i) {
      const int p = (rank_ + size_ - i) % size_;
      if (recv_rows[p] == 0) continue;
      t.recvs.emplace_back();
      t.recv_peers.push_back(p);
      MOE_MPI_CHECK(MPI_Irecv(rbase + roff[p] * cols, count(recv_rows[p] * cols), MPI_FLOAT, p, kExchangeTag, comm_,
                              &t.recvs.back()));
    }
    for (int i = 1; i < size_; ++i) {
      const int p = (rank_ + i) % size_;
      if (send_rows[p] == 0) continue;
      t.sends.emplace_back();
      MOE_MPI_CHECK(MPI_Isend(sbase + soff[p] * cols, count(send_rows[p] * cols), MPI_FLOAT, p, kExchangeTag, comm_,
                              &t.sends.back()));
      traffic_->add(world_rank_of(p), send_rows[p] * cols * 4);
    }
    if (send_rows[rank_] > 0)
      std::memmove(rbase + roff[rank_] * cols, sbase + soff[rank_] * cols, size_t(send_rows[rank_] * cols) * 4);
    t.local_sources.push_back(rank_);
    for (int p = 0; p < size_; ++p)
      if (p != rank_ && (send_rows[p] > 0 || recv_rows[p] > 0)) t.peer_world_ranks.push_back(world_rank_of(p));
    return transfers_->add(std::move(t));
  }
  CommHandle post_send(const Mat& x, int peer, Stream) override {
    check_f32(x);
    MpiTransfers::Posted t;
    if (x.elements() > 0) {
      t.sends.emplace_back();
      MOE_MPI_CHECK(MPI_Isend(x.data, count(x.elements()), MPI_FLOAT, peer, kDataTag, comm_, &t.sends.back()));
      traffic_->add(world_rank_of(peer), x.bytes());
    }
    t.peer_world_ranks = {world_rank_of(peer)};
    return transfers_->add(std::move(t));
  }
  CommHandle post_recv(const Mat& x, int peer, Stream) override {
    check_f32(x);
    MpiTransfers::Posted t;
    if (x.elements() > 0) {
      t.recvs.emplace_back();
      t.recv_peers.push_back(peer);
      MOE_MPI_CHECK(MPI_Irecv(x.data, count(x.elements()), MPI_FLOAT, peer, kDataTag, comm_, &t.recvs.back()));
    }
    t.peer_world_ranks = {world_rank_of(peer)};
    return transfers_->add(std::move(t));
  }
  Event wait(CommHandle h, Stream) override { return transfers_->wait(h); }
  int wait_next_source(CommHandle h, Stream, Event* done) override { return transfers_->wait_next_source(h, done); }
  void progress() override { transfers_->progress(); }

  std::vector<int64_t> all_to_all_counts(const std::vector<int64_t>& send, int per_peer) override {
    BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
    MOE_REQUIRE(per_peer > 0 && static_cast<int64_t>(send.size()) == int64_t(size_) * per_peer,
                "all_to_all_counts: need per_peer counts for every rank");
    std::vector<int64_t> out(send.size());
    MOE_MPI_CHECK(MPI_Alltoall(send.data(), per_peer, MPI_INT64_T, out.data(), per_peer, MPI_INT64_T, comm_));
    return out;
  }
  void all_reduce_sum_host(std::vector<int64_t>& v) override {
    BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
    if (!v.empty()) MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v.data(), count(v.size()), MPI_INT64_T, MPI_SUM, comm_));
  }
  void all_reduce_max_host(std::vector<double>& v) override {
    BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
    if (!v.empty()) MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v.data(), count(v.size()), MPI_DOUBLE, MPI_MAX, comm_));
  }
  void all_reduce_sum_host(std::vector<double>& v) override {
    BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
    if (!v.empty()) MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v.data(), count(v.size()), MPI_DOUBLE, MPI_SUM, comm_));
  }
  std::vector<int64_t> exclusive_scan_host(const std::vector<int64_t>& v) override {
    BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
    std::vector<int64_t> out(v.size(), 0);
    if (!v.empty()) MOE_MPI_CHECK(MPI_Exscan(v.data(), out.data(), count(v.size()), MPI_INT64_T, MPI_SUM, comm_));
    if (rank_ == 0) std::fill(out.begin(), out.end(), 0);  // MPI leaves rank 0's result undefined
    return out;
  }
  void broadcast_host(std::vector<float>& v, int root) override {
    BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
    int64_t n = static_cast<int64_t>(v.size());
    MOE_MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT64_T, root, comm_));
    v.resize(n);
    if (n) MOE_MPI_CHECK(MPI_Bcast(v.data(), count(n), MPI_FLOAT, root, comm_));
  }
  std::vector<float> gather_host(const std::vector<float>& v, int root) override {
    BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
    return mpi_gather_host(comm_, v, MPI_FLOAT, root);
  }
  std::vector<double> gather_host(const std::vector<double>& v, int root) override {
    BlockingWait wait(world_ranks_);
    return mpi_gather_host(comm_, v, MPI_DOUBLE, root);
  }
  void barrier() override {
    BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
    MOE_MPI_CHECK(MPI_Barrier(comm_));
  }

  std::unique_ptr<Comm> split(int color, int key) override {
    BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
    MPI_Comm sub;
    MOE_MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
    return std::make_unique<MpiComm>(sub, traffic_, transfers_);
  }

  TrafficCounters& traffic() override { return *traffic_; }

 private:
  static constexpr int kDataTag = 17;       // point-to-point (blocking and posted)
  static constexpr int kExchangeTag = 18;   // posted all-to-all; matched in posting order
  static int count(int64_t n) {
    MOE_REQUIRE(n >= 0 && n <= INT32_MAX, "MPI message of " + std::to_string(n) + " elements exceeds the int count limit");
    return static_cast<int>(n);
  }
  static void check_f32(const Mat& m) { MOE_REQUIRE(m.dtype == DType::f32, "MPI data plane carries fp32 buffers only"); }

  MPI_Comm comm_;
  std::shared_ptr<TrafficCounters> traffic_;
  std::shared_ptr<MpiTransfers> transfers_;
  int rank_ = 0;
  int size_ = 1;
  std::vector<int> world_ranks_;
};

}  // namespace

std::unique_ptr<Comm> make_mpi_world_comm(ComputeBackend& compute) {
  MOE_REQUIRE(compute.name() == "cpu", "the MPI data plane needs the cpu compute backend");
  MPI_Comm dup;
  MOE_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &dup));
  int world = 0;
  MOE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world));
  auto traffic = std::make_shared<TrafficCounters>();
  traffic->bytes_to_rank.assign(world, 0);
  // MPI progress for posted transfers: polling between kernel blocks (the default: measured faster
  // on this project's 2-core machine, see README) or a progress thread (MOE_CPU_PROGRESS=thread).
  const std::string progress = cpu_progress_mode();
  int level = 0;
  MOE_MPI_CHECK(MPI_Query_thread(&level));
  if (progress == "thread" && level < MPI_THREAD_MULTIPLE)
    throw ConfigError("MOE_CPU_PROGRESS", "thread needs MPI initialised with MPI_THREAD_MULTIPLE");
  auto transfers = std::make_shared<MpiTransfers>(compute, progress == "thread");
  if (progress == "poll") compute.set_progress_hook([transfers] { transfers->progress(); });
  return std::make_unique<MpiComm>(dup, traffic, transfers);
}

}  // namespace moe
