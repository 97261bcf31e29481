// Comm over MPI: MPI_Allreduce / MPI_Alltoallv / MPI_Send / MPI_Recv on fp32 host buffers, posted
// transfers as per-peer MPI_Isend / MPI_Irecv (mpi_transfers.hpp); the host control plane is
// MpiControlPlane's.
// Bytes sent to each world rank are counted for the traffic report.
#include "backend/cpu/mpi_comm.hpp"

#include <mpi.h>

#include <cstdlib>
#include <cstring>
#include <numeric>

#include "backend/cpu/mpi_transfers.hpp"
#include "backend/mpi_control.hpp"
#include "backend/round16.hpp"

#include "core/error.hpp"
#include "core/mpi_session.hpp"
#include "core/watchdog.hpp"

namespace moe {
namespace {

class MpiComm final : public MpiControlPlane {
 public:
  MpiComm(MPI_Comm comm, std::shared_ptr<TrafficCounters> traffic, std::shared_ptr<MpiTransfers> transfers,
          DType precision)
      : MpiControlPlane(comm), traffic_(std::move(traffic)), transfers_(std::move(transfers)), precision_(precision) {}

  void all_reduce_sum(const Mat& x, Stream) override {
    BlockingWait wait(world_ranks());  // bounded by run.timeout_s
    check_f32(x);
    if (size() == 1 || x.elements() == 0) return;
    MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, x.data, count(x.elements()), MPI_FLOAT, MPI_SUM, mpi()));
    // Emulated 16-bit: the sum is stored in the 16-bit format (a device reduces in it hop by hop).
    float* v = static_cast<float*>(x.data);
    if (precision_ == DType::f16)
      for (int64_t i = 0; i < x.elements(); ++i) v[i] = round_to_fp16(v[i]);
    else if (precision_ == DType::bf16)
      for (int64_t i = 0; i < x.elements(); ++i) v[i] = round_to_bf16(v[i]);
    // Ring all-reduce cost: each rank sends 2 (n-1)/n of the buffer, to its ring neighbour.
    const int64_t bytes = 2 * x.bytes() * (size() - 1) / size();
    traffic_->add(world_rank_of((rank() + 1) % size()), bytes);
  }

  void all_to_all_v(const Mat& send, const std::vector<int64_t>& send_rows, const Mat& recv,
                    const std::vector<int64_t>& recv_rows, Stream) override {
    BlockingWait wait(world_ranks());  // bounded by run.timeout_s
    check_f32(send);
    check_f32(recv);
    MOE_REQUIRE(static_cast<int>(send_rows.size()) == size() && static_cast<int>(recv_rows.size()) == size(),
                "all_to_all_v: counts must have one entry per rank");
    MOE_REQUIRE(send.cols == recv.cols, "all_to_all_v: send and receive row widths differ");
    const int64_t cols = send.cols;
    std::vector<int> scount(size()), sdispl(size()), rcount(size()), rdispl(size());
    int64_t soff = 0, roff = 0;
    for (int p = 0; p < size(); ++p) {
      scount[p] = count(send_rows[p] * cols);
      sdispl[p] = count(soff * cols);
      rcount[p] = count(recv_rows[p] * cols);
      rdispl[p] = count(roff * cols);
      soff += send_rows[p];
      roff += recv_rows[p];
      if (p != rank()) traffic_->add(world_rank_of(p), send_rows[p] * cols * 4);
    }
    MOE_REQUIRE(soff <= send.rows, "all_to_all_v: send counts exceed the send buffer");
    MOE_REQUIRE(roff <= recv.rows, "all_to_all_v: receive counts exceed the receive buffer");
    MOE_MPI_CHECK(MPI_Alltoallv(send.data, scount.data(), sdispl.data(), MPI_FLOAT, recv.data, rcount.data(),
                                rdispl.data(), MPI_FLOAT, mpi()));
  }

  void send(const Mat& x, int peer, Stream) override {
    BlockingWait wait(world_rank_of(peer));  // bounded by run.timeout_s
    check_f32(x);
    MOE_MPI_CHECK(MPI_Send(x.data, count(x.elements()), MPI_FLOAT, peer, kDataTag, mpi()));
    traffic_->add(world_rank_of(peer), x.bytes());
  }
  void recv(const Mat& x, int peer, Stream) override {
    BlockingWait wait(world_rank_of(peer));  // bounded by run.timeout_s
    check_f32(x);
    MOE_MPI_CHECK(MPI_Recv(x.data, count(x.elements()), MPI_FLOAT, peer, kDataTag, mpi(), MPI_STATUS_IGNORE));
  }

  CommHandle post_all_to_all_v(const Mat& send, const std::vector<int64_t>& send_rows, const Mat& recv,
                               const std::vector<int64_t>& recv_rows, Stream) override {
    check_f32(send);
    check_f32(recv);
    MOE_REQUIRE(static_cast<int>(send_rows.size()) == size() && static_cast<int>(recv_rows.size()) == size(),
                "post_all_to_all_v: counts must have one entry per rank");
    MOE_REQUIRE(send.cols == recv.cols, "post_all_to_all_v: send and receive row widths differ");
    const int64_t cols = send.cols;
    const float* sbase = static_cast<const float*>(send.data);
    float* rbase = static_cast<float*>(recv.data);
    std::vector<int64_t> soff(size() + 1, 0), roff(size() + 1, 0);
    for (int p = 0; p < size(); ++p) {
      MOE_REQUIRE(send_rows[p] >= 0 && recv_rows[p] >= 0, "post_all_to_all_v: negative row count");
      soff[p + 1] = soff[p] + send_rows[p];
      roff[p + 1] = roff[p] + recv_rows[p];
    }
    MOE_REQUIRE(soff[size()] <= send.rows, "post_all_to_all_v: send counts exceed the send buffer");
    MOE_REQUIRE(roff[size()] <= recv.rows, "post_all_to_all_v: receive counts exceed the receive buffer");
    MOE_REQUIRE(send_rows[rank()] == recv_rows[rank()], "post_all_to_all_v: rows to self differ from rows from self");
    MpiTransfers::Posted t;
    // Receives first (peers after this rank first, so that the ranks do not all start on rank 0).
    for (int i = 1; i < size(); ++i) {
      const int p = (rank() + size() - i) % size();
      if (recv_rows[p] == 0) continue;
      t.recvs.emplace_back();
      t.recv_peers.push_back(p);
      MOE_MPI_CHECK(MPI_Irecv(rbase + roff[p] * cols, count(recv_rows[p] * cols), MPI_FLOAT, p, kExchangeTag, mpi(),
                              &t.recvs.back()));
    }
    for (int i = 1; i < size(); ++i) {
      const int p = (rank() + i) % size();
      if (send_rows[p] == 0) continue;
      t.sends.emplace_back();
      MOE_MPI_CHECK(MPI_Isend(sbase + soff[p] * cols, count(send_rows[p] * cols), MPI_FLOAT, p, kExchangeTag, mpi(),
                              &t.sends.back()));
      traffic_->add(world_rank_of(p), send_rows[p] * cols * 4);
    }
    if (send_rows[rank()] > 0)
      std::memmove(rbase + roff[rank()] * cols, sbase + soff[rank()] * cols, size_t(send_rows[rank()] * cols) * 4);
    t.local_sources.push_back(rank());
    for (int p = 0; p < size(); ++p)
      if (p != rank() && (send_rows[p] > 0 || recv_rows[p] > 0)) t.peer_world_ranks.push_back(world_rank_of(p));
    return transfers_->add(std::move(t));
  }
  CommHandle post_send(const Mat& x, int peer, Stream) override {
    check_f32(x);
    MpiTransfers::Posted t;
    if (x.elements() > 0) {
      t.sends.emplace_back();
      MOE_MPI_CHECK(MPI_Isend(x.data, count(x.elements()), MPI_FLOAT, peer, kDataTag, mpi(), &t.sends.back()));
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
      MOE_MPI_CHECK(MPI_Irecv(x.data, count(x.elements()), MPI_FLOAT, peer, kDataTag, mpi(), &t.recvs.back()));
    }
    t.peer_world_ranks = {world_rank_of(peer)};
    return transfers_->add(std::move(t));
  }
  Event wait(CommHandle h, Stream) override { return transfers_->wait(h); }
  int wait_next_source(CommHandle h, Stream, Event* done) override { return transfers_->wait_next_source(h, done); }
  void progress() override { transfers_->progress(); }

  std::unique_ptr<Comm> split(int color, int key) override {
    return std::make_unique<MpiComm>(split_mpi(color, key), traffic_, transfers_, precision_);
  }

  TrafficCounters& traffic() override { return *traffic_; }

 private:
  static constexpr int kDataTag = 17;       // point-to-point (blocking and posted)
  static constexpr int kExchangeTag = 18;   // posted all-to-all; matched in posting order
  static int count(int64_t n) { return mpi_count(n); }
  static void check_f32(const Mat& m) { MOE_REQUIRE(m.dtype == DType::f32, "MPI data plane carries fp32 buffers only"); }

  std::shared_ptr<TrafficCounters> traffic_;
  std::shared_ptr<MpiTransfers> transfers_;
  DType precision_;  // the compute backend's: emulated 16-bit rounds reduced values
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
  return std::make_unique<MpiComm>(dup, traffic, transfers, compute.precision());
}

}  // namespace moe
