// The pinned staging ring: regions never overlap live ones, a full ring waits for the oldest fence
// (and only then reuses its bytes), wrap-around, oversized requests, and retiring completed fences.
#include <catch2/catch.hpp>

#include <vector>

#include "backend/staging_ring.hpp"

using namespace moe;

namespace {

struct Live {
  int64_t begin, end;
  uint64_t fence;
};

}  // namespace

TEST_CASE("staging ring hands out disjoint regions and waits for the oldest fence when full", "[staging_ring]") {
  StagingRing ring(4096);
  std::vector<uint64_t> waited;
  auto wait = [&](uint64_t f) { waited.push_back(f); };
  CHECK(ring.take(1000, wait) == 0);     // 1024 after alignment
  ring.fence(1);
  CHECK(ring.take(2000, wait) == 1024);  // 2048
  ring.fence(2);
  CHECK(ring.take(1024, wait) == 3072);  // fills the ring exactly
  ring.fence(3);
  CHECK(waited.empty());
  CHECK(ring.live_bytes() == 4096);
  // Full: the next request waits for fence 1 and reuses its bytes at the start.
  CHECK(ring.take(512, wait) == 0);
  CHECK(waited == std::vector<uint64_t>{1});
  ring.fence(4);
  // 512 bytes free at [512, 1024): a 1024-byte request waits for fence 2 as well.
  CHECK(ring.take(1024, wait) == 512);
  CHECK(waited == std::vector<uint64_t>{1, 2});
}

TEST_CASE("staging ring: random traffic never overlaps a live region", "[staging_ring]") {
  StagingRing ring(64 * 1024);
  std::vector<Live> live;
  uint64_t next_fence = 1, completed = 0;
  auto wait = [&](uint64_t f) {
    CHECK(f > completed);
    completed = f;
    std::vector<Live> keep;
    for (const Live& l : live)
      if (l.fence > f) keep.push_back(l);
    live = keep;
  };
  for (int i = 0; i < 5000; ++i) {
    const int64_t bytes = 1 + (i * 7919) % 20000;
    const int64_t at = ring.take(bytes, wait);
    REQUIRE(at >= 0);
    REQUIRE(at + bytes <= ring.capacity());
    for (const Live& l : live) REQUIRE((at + bytes <= l.begin || at >= l.end));
    live.push_back(Live{at, at + bytes, next_fence});
    ring.fence(next_fence++);
  }
  CHECK(completed > 0);
}

TEST_CASE("staging ring: oversized requests, retire and an unfenced full ring", "[staging_ring]") {
  StagingRing ring(1024);
  auto never = [](uint64_t) { FAIL("no wait expected"); };
  CHECK(ring.take(2048, never) == -1);
  CHECK(ring.take(1024, never) == 0);
  // Full with a region that has no fence yet: an error, not a deadlock.
  CHECK_THROWS(ring.take(256, [](uint64_t) {}));
  ring.fence(7);
  ring.retire([](uint64_t f) { return f < 7; });
  CHECK(ring.live_bytes() == 1024);
  ring.retire([](uint64_t f) { return f <= 7; });
  CHECK(ring.live_bytes() == 0);
  CHECK(ring.take(256, never) == 0);
}
