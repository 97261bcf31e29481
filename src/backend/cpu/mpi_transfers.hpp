// Posted (non-blocking) MPI transfers of the CPU data plane: per-peer MPI_Isend / MPI_Irecv, shared
// by a root communicator and every group split from it so that one progress call advances them all.
// Open MPI 4.1 moves data only inside MPI calls: progress() is called between blocks of compute.
#pragma once
#include <mpi.h>

#include <map>
#include <vector>

#include "backend/backend.hpp"

namespace moe {

class MpiTransfers {
 public:
  explicit MpiTransfers(ComputeBackend& compute) : compute_(compute) {}

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

  ComputeBackend& compute_;
  std::map<int, Live> live_;
  int next_id_ = 0;
};

}  // namespace moe
