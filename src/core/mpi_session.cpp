// MPI init/finalize and world-level host helpers used before backends exist.
#include "core/mpi_session.hpp"

#include <string>

#include <cstdio>

#include <mpi.h>

#include <unistd.h>

#include <cstdlib>
#include <sstream>

#include "core/error.hpp"
#include "core/watchdog.hpp"

namespace moe {

void throw_mpi_error(int code, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(code, text, &len);
  std::ostringstream os;
  os << "MPI call " << call << " failed: " << text << " (" << file << ":" << line << ")";
  throw Error(os.str());
}

std::string cpu_progress_mode() {
  const char* mode = std::getenv("MOE_CPU_PROGRESS");
  const std::string m = mode ? mode : "poll";
  if (m != "poll" && m != "thread") throw ConfigError("MOE_CPU_PROGRESS", "must be poll or thread, got '" + m + "'");
  return m;
}

MpiSession::MpiSession(int* argc, char*** argv) : MpiSession(argc, argv, true) {}

bool MpiSession::launched_by_mpi_launcher() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

MpiSession::MpiSession(int* argc, char*** argv, bool initialize) {
  if (!initialize) return;
  initialized_ = true;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // MOE_CPU_PROGRESS=thread: the CPU backend's progress thread (mpi_transfers.hpp) needs
    // MPI_THREAD_MULTIPLE; by default the backend polls between kernel blocks instead.
    const char* progress = std::getenv("MOE_CPU_PROGRESS");   // validated by cpu_progress_mode() on use
    const bool thread = progress && std::string(progress) == "thread";
    int provided = 0;
    MPI_Init_thread(argc, argv, thread ? MPI_THREAD_MULTIPLE : MPI_THREAD_FUNNELED, &provided);
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MOE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  MOE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
  world_ranks_.resize(size_);
  for (int r = 0; r < size_; ++r) world_ranks_[r] = r;
  // A watchdog timeout, a signal or a failure on one rank ends every rank.
  watchdog::set_abort_function([](int code) { MPI_Abort(MPI_COMM_WORLD, code); });
  MPI_Comm local;
  MOE_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local));
  MOE_MPI_CHECK(MPI_Comm_rank(local, &local_rank_));
  MPI_Comm_free(&local);
}

MpiSession::~MpiSession() {
  if (!initialized_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

std::string MpiSession::broadcast_string(const std::string& s, int root) const {
  if (!initialized_) return s;
  BlockingWait wait(world_ranks_);
  int64_t n = static_cast<int64_t>(s.size());
  MOE_MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT64_T, root, MPI_COMM_WORLD));
  std::string out = rank_ == root ? s : std::string(static_cast<size_t>(n), '\0');
  if (n) MOE_MPI_CHECK(MPI_Bcast(out.data(), static_cast<int>(n), MPI_CHAR, root, MPI_COMM_WORLD));
  return out;
}

bool MpiSession::any(bool flag) const {
  if (!initialized_) return flag;
  BlockingWait wait(world_ranks_);
  int in = flag ? 1 : 0, out = 0;
  MOE_MPI_CHECK(MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  return out != 0;
}

std::vector<std::string> MpiSession::all_host_names() const {
  char name[MPI_MAX_PROCESSOR_NAME] = {0};
  int len = 0;
  if (!initialized_) {
    gethostname(name, sizeof name - 1);
    return {name};
  }
  MPI_Get_processor_name(name, &len);
  BlockingWait wait(world_ranks_);
  std::vector<char> all(static_cast<size_t>(size_) * MPI_MAX_PROCESSOR_NAME);
  MOE_MPI_CHECK(MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR,
                              MPI_COMM_WORLD));
  std::vector<std::string> out;
  for (int r = 0; r < size_; ++r) out.emplace_back(all.data() + static_cast<size_t>(r) * MPI_MAX_PROCESSOR_NAME);
  return out;
}

std::string MpiSession::library_version() const {
  char v[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  MPI_Get_library_version(v, &len);
  std::string s(v);
  const auto nl = s.find_first_of("\n,");
  return nl == std::string::npos ? s : s.substr(0, nl);
}

void MpiSession::barrier() const {
  BlockingWait wait(world_ranks_);
  if (initialized_) MOE_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

void MpiSession::abort(int code) const {
  if (initialized_) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace moe
