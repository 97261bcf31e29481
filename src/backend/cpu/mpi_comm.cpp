// Comm over MPI: MPI_Allreduce / MPI_Alltoallv / MPI_Send / MPI_Recv on fp32 host buffers, plus the
// host control plane. Bytes sent to each world rank are counted for the traffic report.
#include "backend/cpu/mpi_comm.hpp"

#include <mpi.h>

#include <numeric>

#include "core/error.hpp"
#include "core/mpi_session.hpp"
#include "core/watchdog.hpp"

namespace moe {
namespace {

class MpiComm : public Comm {
 public:
  MpiComm(MPI_Comm comm, std::shared_ptr<TrafficCounters> traffic) : comm_(comm), traffic_(std::move(traffic)) {
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

  std::vector<int64_t> all_to_all_counts(const std::vector<int64_t>& send) override {
    BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
    MOE_REQUIRE(static_cast<int>(send.size()) == size_, "all_to_all_counts: need one count per rank");
    std::vector<int64_t> out(size_);
    MOE_MPI_CHECK(MPI_Alltoall(send.data(), 1, MPI_INT64_T, out.data(), 1, MPI_INT64_T, comm_));
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
    int n = count(v.size());
    std::vector<int> counts(size_), displs(size_);
    MOE_MPI_CHECK(MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, root, comm_));
    std::vector<float> out;
    if (rank_ == root) {
      int64_t total = 0;
      for (int p = 0; p < size_; ++p) {
        displs[p] = count(total);
        total += counts[p];
      }
      out.resize(total);
    }
    MOE_MPI_CHECK(MPI_Gatherv(v.data(), n, MPI_FLOAT, out.data(), counts.data(), displs.data(), MPI_FLOAT, root, comm_));
    return out;
  }
  void barrier() override {
    BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
    MOE_MPI_CHECK(MPI_Barrier(comm_));
  }

  std::unique_ptr<Comm> split(int color, int key) override {
    BlockingWait wait(world_ranks_);  // bounded by run.timeout_s
    MPI_Comm sub;
    MOE_MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
    return std::make_unique<MpiComm>(sub, traffic_);
  }

  TrafficCounters& traffic() override { return *traffic_; }

 private:
  static constexpr int kDataTag = 17;
  static int count(int64_t n) {
    MOE_REQUIRE(n >= 0 && n <= INT32_MAX, "MPI message of " + std::to_string(n) + " elements exceeds the int count limit");
    return static_cast<int>(n);
  }
  static void check_f32(const Mat& m) { MOE_REQUIRE(m.dtype == DType::f32, "MPI data plane carries fp32 buffers only"); }

  MPI_Comm comm_;
  std::shared_ptr<TrafficCounters> traffic_;
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
  return std::make_unique<MpiComm>(dup, traffic);
}

}  // namespace moe
