// Catch2 runner for tests that need several ranks: MPI is initialised around the session, and the
// exit code is agreed over ranks so ctest sees any rank's failure.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <mpi.h>

#include "core/mpi_session.hpp"

int main(int argc, char** argv) {
  moe::MpiSession mpi(&argc, &argv);
  Catch::Session session;
  if (mpi.rank() != 0) session.configData().reporterName = "compact";  // rank 0 reports in full
  const int rc = session.run(argc, argv);
  return mpi.any(rc != 0) ? 1 : 0;
}
