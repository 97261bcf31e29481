// Error types and check macros. Every failure throws with a message naming what was wrong and where;
// main() catches, prints "[rank r] message" and exits non-zero.
#pragma once
#include <stdexcept>
#include <string>

namespace moe {

// A failed internal check or runtime failure (file:line attached).
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad user input (config, CLI, plan file). Deterministic: every rank raises the same one, so ranks
// can exit together without MPI_Abort.
class ConfigError : public Error {
 public:
  ConfigError(const std::string& path, const std::string& reason)
      : Error(path.empty() ? reason : path + ": " + reason), path_(path), reason_(reason) {}
  const std::string& path() const { return path_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string path_;
  std::string reason_;
};

[[noreturn]] void throw_check_failure(const char* expr, const std::string& message, const char* file, int line);

}  // namespace moe

#define MOE_REQUIRE(cond, message)                                              \
  do {                                                                          \
    if (!(cond)) ::moe::throw_check_failure(#cond, (message), __FILE__, __LINE__); \
  } while (0)
