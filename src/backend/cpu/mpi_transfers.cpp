// Posted MPI transfers (see mpi_transfers.hpp). A transfer is complete once every receive has
// arrived and every send has left; its completion event carries the time that was first observed,
// by the caller's thread or the progress thread.
#include "backend/cpu/mpi_transfers.hpp"

#include <chrono>

#include "core/error.hpp"
#include "core/watchdog.hpp"
#include "core/mpi_session.hpp"

namespace moe {

MpiTransfers::MpiTransfers(ComputeBackend& compute, bool thread) : compute_(compute) {
  if (thread) thread_ = std::thread([this] { progress_loop(); });
}

MpiTransfers::~MpiTransfers() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

// While transfers are live: test them (each test turns the progress engine), then sleep 20 µs.
void MpiTransfers::progress_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (live_.empty()) {
      wake_.wait(lock, [this] { return stop_ || !live_.empty(); });
      continue;
    }
    for (auto& kv : live_) test(kv.second);
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::microseconds(20));
    lock.lock();
  }
}

CommHandle MpiTransfers::add(Posted p) {
  std::lock_guard<std::mutex> lock(mu_);
  Live t;
  t.arrived.assign(p.recvs.size(), 0);
  t.delivered.assign(p.recvs.size(), 0);
  t.posted = std::move(p);
  const int id = next_id_++;
  const bool was_empty = live_.empty();
  live_.emplace(id, std::move(t));
  test(live_.at(id));
  if (thread_.joinable() && was_empty) wake_.notify_one();
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
    t.completed_at = Clock::now();
  }
}

void MpiTransfers::erase(CommHandle h) { live_.erase(h.id); }

void MpiTransfers::progress() {
  std::lock_guard<std::mutex> lock(mu_);
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
  t.completed_at = Clock::now();
}

Event MpiTransfers::done_event(const Live& t) { return compute_.record_at(t.completed_at); }

Event MpiTransfers::wait(CommHandle h) {
  std::lock_guard<std::mutex> lock(mu_);
  Live& t = live(h);
  finish(t);
  const Event done = done_event(t);
  erase(h);
  return done;
}

int MpiTransfers::wait_next_source(CommHandle h, Event* done) {
  std::lock_guard<std::mutex> lock(mu_);
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
  if (done) *done = done_event(t);
  erase(h);
  return -1;
}

}  // namespace moe
