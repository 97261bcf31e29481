// Posted (non-blocking) MPI transfers of the CPU data plane: per-peer MPI_Isend / MPI_Irecv, shared
// by a root communicator and every group split from it so that one progress call advances them all.
// Open MPI 4.1 moves data only inside MPI calls. Two ways to make it: a progress thread enters MPI
// every 20 µs while transfers are pending (MOE_CPU_PROGRESS=thread, the default when MPI provides
// MPI_THREAD_MULTIPLE), or the compute backend calls progress() between blocks of its kernels
// (MOE_CPU_PROGRESS=poll). scripts/bench-overlap.sh measures both.
#pragma once
#include <mpi.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "backend/backend.hpp"

namespace moe {

class MpiTransfers {
 public:
  // `thread`: start a progress thread (over its own duplicate of `comm`; collective).
  MpiTransfers(ComputeBackend& compute, bool thread, MPI_Comm comm);
  ~MpiTransfers();
  MpiTransfers(const MpiTransfers&) = delete;
  MpiTransfers& operator=(const MpiTransfers&) = delete;
  bool progress_thread() const { return thread_.joinable(); }

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
  struct Live {
    Posted posted;
    std::vector<char> arrived;     // [recvs] completed
    std::vector<char> delivered;   // [recvs] handed to the caller by wait_next_source
    size_t next_local = 0;         // local sources handed out so far
    bool sends_done = false;
    bool complete = false;
    Event done;
  };
  Live& live(CommHandle h);
  void test(Live& t);
  void finish(Live& t);          // blocks until the transfer is complete
  void erase(CommHandle h);

  void progress_loop();

  ComputeBackend& compute_;
  std::map<int, Live> live_;
  int next_id_ = 0;
  // Progress thread: enters MPI while pending_ > 0 (the transfers themselves stay on the caller's thread).
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::atomic<int> pending_{0};
  bool stop_ = false;
  MPI_Comm probe_comm_ = MPI_COMM_NULL;
};

}  // namespace moe
