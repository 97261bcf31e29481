// Posted (non-blocking) MPI transfers of the CPU data plane: per-peer MPI_Isend / MPI_Irecv, shared
// by a root communicator and every group split from it so that one progress call advances them all.
// Open MPI 4.1 moves data only inside MPI calls. Two ways to make it: the compute backend calls
// progress() at every kernel and between blocks of the long ones (MOE_CPU_PROGRESS=poll, the
// default), or a progress thread tests the live transfers every 20 µs while there are any
// (MOE_CPU_PROGRESS=thread, needs MPI_THREAD_MULTIPLE). scripts/bench-overlap.sh measures both.
#pragma once
#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "backend/backend.hpp"

namespace moe {

class MpiTransfers {
 public:
  // `thread`: start the progress thread (needs MPI_THREAD_MULTIPLE).
  MpiTransfers(ComputeBackend& compute, bool thread);
  ~MpiTransfers();
  MpiTransfers(const MpiTransfers&) = delete;
  MpiTransfers& operator=(const MpiTransfers&) = delete;

  // One transfer: receives from `recv_peers` (group ranks) and sends, already posted.
  struct Posted {
    std::vector<MPI_Request> recvs;   // [recv_peers.size()]
    std::vector<int> recv_peers;
    std::vector<MPI_Request> sends;
    std::vector<int> local_sources;   // sources already complete at posting (this rank's own rows)
    std::vector<int> peer_world_ranks;  // world ranks this transfer waits on (for the watchdog)
  };
  CommHandle add(Posted p);
  void progress();   // tests every live transfer, never blocks
  Event wait(CommHandle h);
  int wait_next_source(CommHandle h, Event* done);

 private:
  using Clock = std::chrono::steady_clock;
  struct Live {
    Posted posted;
    std::vector<char> arrived;     // [recvs] completed
    std::vector<char> delivered;   // [recvs] handed to the caller by wait_next_source
    size_t next_local = 0;         // local sources handed out so far
    bool sends_done = false;
    bool complete = false;
    Clock::time_point completed_at;   // when completion was first observed (by either thread)
  };
  // Every function below runs with mu_ held: MPI requests are used by one thread at a time.
  Live& live(CommHandle h);
  void test(Live& t);
  void finish(Live& t);          // blocks until the transfer is complete
  Event done_event(const Live& t);
  void erase(CommHandle h);
  void progress_loop();

  ComputeBackend& compute_;
  std::map<int, Live> live_;
  int next_id_ = 0;
  std::mutex mu_;
  std::thread thread_;
  std::condition_variable wake_;
  bool stop_ = false;
};

}  // namespace moe
