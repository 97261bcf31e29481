// Out-of-line construction of check-failure messages (keeps the macro thin).
#include "core/error.hpp"

#include <sstream>

namespace moe {

void throw_check_failure(const char* expr, const std::string& message, const char* file, int line) {
  std::ostringstream os;
  os << message << " (check `" << expr << "` failed at " << file << ":" << line << ")";
  throw Error(os.str());
}

}  // namespace moe
