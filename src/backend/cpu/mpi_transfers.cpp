// Posted MPI transfers (see mpi_transfers.hpp). A transfer is complete once every receive has
// arrived and every send has left; its completion event is recorded when that is first observed.
#include "backend/cpu/mpi_transfers.hpp"

#include <chrono>

#include "core/error.hpp"
#include "core/watchdog.hpp"
#include "core/mpi_session.hpp"

namespace moe {

MpiTransfers::MpiTransfers(ComputeBackend& compute, bool thread, MPI_Comm comm) : compute_(compute) {
  if (!thread) return;
  MOE_MPI_CHECK(MPI_Comm_dup(comm, &probe_comm_));
  thread_ = std::thread([this] { progress_loop(); });
}

MpiTransfers::~MpiTransfers() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }
  if (probe_comm_ != MPI_COMM_NULL) MPI_Comm_free(&probe_comm_);
}

// A probe on a communicator nobody sends on: its only effect is a turn of the progress engine.
void MpiTransfers::progress_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (pending_.load(std::memory_order_relaxed) == 0) {
      wake_.wait(lock, [this] { return stop_ || pending_.load(std::memory_order_relaxed) > 0; });
      continue;
    }
    lock.unlock();
    int flag = 0;
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, probe_comm_, &flag, MPI_STATUS_IGNORE);
    std::this_thread::sleep_for(std::chrono::microseconds(20));
    lock.lock();
  }
}

CommHandle MpiTransfers::add(Posted p) {
  Live t;
  t.arrived.assign(p.recvs.size(), 0);
  t.delivered.assign(p.recvs.size(), 0);
  t.posted = std::move(p);
  const int id = next_id_++;
  live_.emplace(id, std::move(t));
  if (thread_.joinable() && pending_.fetch_add(1) == 0) wake_.notify_one();
  test(live_.at(id));
  return CommHandle{id};
}

MpiTransfers::Live& MpiTransfers::live(CommHandle h) {
  auto it = live_.find(h.id);
  MOE_REQUIRE(it != live_.end(), "unknown or already completed transfer handle " + std::to_string(h.id));
  return it->second;
}

void MpiTransfers::test(Live& t) {
  if (t.complete) return;
  std::vector<MPI_Request>& r = t.posted.recvs;
  if (!r.empty()) {
    std::vector<int> idx(r.size());
    int n = 0;
    MOE_MPI_CHECK(MPI_Testsome(static_cast<int>(r.size()), r.data(), &n, idx.data(), MPI_STATUSES_IGNORE));
    for (int i = 0; i < n && n != MPI_UNDEFINED; ++i) t.arrived[idx[i]] = 1;
  }
  if (!t.sends_done) {
    int flag = 1;
    if (!t.posted.sends.empty())
      MOE_MPI_CHECK(MPI_Testall(static_cast<int>(t.posted.sends.size()), t.posted.sends.data(), &flag, MPI_STATUSES_IGNORE));
    t.sends_done = flag != 0;
  }
  bool all = t.sends_done;
  for (char a : t.arrived) all = all && a;
  if (all) {
    t.complete = true;
    t.done = compute_.record(Stream::recv);
  }
}

void MpiTransfers::erase(CommHandle h) {
  live_.erase(h.id);
  if (thread_.joinable()) pending_.fetch_sub(1);
}

void MpiTransfers::progress() {
  for (auto& kv : live_) test(kv.second);
}

void MpiTransfers::finish(Live& t) {
  if (t.complete) return;
  BlockingWait wait(t.posted.peer_world_ranks);  // bounded by run.timeout_s
  std::vector<MPI_Request>& r = t.posted.recvs;
  if (!r.empty()) MOE_MPI_CHECK(MPI_Waitall(static_cast<int>(r.size()), r.data(), MPI_STATUSES_IGNORE));
  std::fill(t.arrived.begin(), t.arrived.end(), 1);
  if (!t.posted.sends.empty())
    MOE_MPI_CHECK(MPI_Waitall(static_cast<int>(t.posted.sends.size()), t.posted.sends.data(), MPI_STATUSES_IGNORE));
  t.sends_done = true;
  t.complete = true;
  t.done = compute_.record(Stream::recv);
}

Event MpiTransfers::wait(CommHandle h) {
  Live& t = live(h);
  finish(t);
  const Event done = t.done;
  erase(h);
  return done;
}

int MpiTransfers::wait_next_source(CommHandle h, Event* done) {
  Live& t = live(h);
  if (t.next_local < t.posted.local_sources.size()) return t.posted.local_sources[t.next_local++];
  for (;;) {
    for (size_t i = 0; i < t.arrived.size(); ++i)
      if (t.arrived[i] && !t.delivered[i]) {
        t.delivered[i] = 1;
        return t.posted.recv_peers[i];
      }
    bool pending = false;
    for (char d : t.delivered) pending = pending || !d;
    if (!pending) break;
    int idx = MPI_UNDEFINED;
    std::vector<MPI_Request>& r = t.posted.recvs;
    BlockingWait wait(t.posted.peer_world_ranks);
    MOE_MPI_CHECK(MPI_Waitany(static_cast<int>(r.size()), r.data(), &idx, MPI_STATUS_IGNORE));
    MOE_REQUIRE(idx != MPI_UNDEFINED, "wait_next_source: no receive left to wait for");
    t.arrived[idx] = 1;
  }
  finish(t);
  if (done) *done = t.done;
  erase(h);
  return -1;
}

}  // namespace moe
