// MPI lifetime and the world-level host helpers needed before any backend exists (config
// broadcast, agreeing on errors, host names). The only place outside src/backend/cpu that
// touches MPI directly.
#pragma once
#include <string>
#include <vector>

namespace moe {

// MOE_CPU_PROGRESS: how the CPU backend makes MPI progress on posted transfers, "poll" (default) or
// "thread" (needs MPI_THREAD_MULTIPLE). Throws ConfigError on any other value.
std::string cpu_progress_mode();

class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);   // MPI_Init_thread (FUNNELED); errors return, not abort
  // A single process without MPI (initialize = false): rank 0 of 1, every helper local. For the
  // one-process commands started without a launcher, which then skip MPI's start-up.
  MpiSession(int* argc, char*** argv, bool initialize);
  // Whether an MPI launcher (mpirun, srun, hydra) started this process.
  static bool launched_by_mpi_launcher();
  ~MpiSession();                          // MPI_Finalize
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }   // rank within this host (MPI_COMM_TYPE_SHARED)

  // Root's string on every rank.
  std::string broadcast_string(const std::string& s, int root = 0) const;
  // True on every rank if `flag` is true on any rank.
  bool any(bool flag) const;
  // Host name of every rank, in rank order (on every rank).
  std::vector<std::string> all_host_names() const;
  std::string library_version() const;
  void barrier() const;
  [[noreturn]] void abort(int code) const;     // MPI_Abort(MPI_COMM_WORLD)

 private:
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  bool initialized_ = false;   // this session called MPI_Init (and finalizes)
  std::vector<int> world_ranks_;   // 0 .. size-1, named by the watchdog when a world collective stalls
};

}  // namespace moe

// Throws moe::Error with the MPI error string, call, file and line when an MPI call fails
// (communicators use MPI_ERRORS_RETURN).
namespace moe {
void throw_mpi_error(int code, const char* call, const char* file, int line);
}
#define MOE_MPI_CHECK(call)                                                  \
  do {                                                                       \
    int moe_mpi_rc_ = (call);                                                \
    if (moe_mpi_rc_ != 0) ::moe::throw_mpi_error(moe_mpi_rc_, #call, __FILE__, __LINE__); \
  } while (0)
