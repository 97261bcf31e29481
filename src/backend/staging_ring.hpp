// Space in a pinned host buffer for host -> device copies in flight. The caller copies its host
// data into a region and queues the device copy from there, so its own vector may be freed at once;
// a region is reused only after the stream work that reads it has completed (its fence). Regions
// are handed out in ring order; when the ring is full the oldest fence is waited for. Pure host
// logic (the CUDA backend supplies events as fences), unit tested on the CPU.
#pragma once
#include <cstdint>
#include <deque>

#include "core/error.hpp"

namespace moe {

class StagingRing {
 public:
  static constexpr int64_t kAlign = 256;
  explicit StagingRing(int64_t capacity_bytes) : capacity_(capacity_bytes / kAlign * kAlign) {
    MOE_REQUIRE(capacity_ >= kAlign, "staging ring: capacity below one aligned block");
  }
  int64_t capacity() const { return capacity_; }

  // Offset of `bytes` contiguous free bytes, or -1 when bytes exceeds the capacity (the caller
  // splits the copy). wait(fence) must block until the work of that fence has completed; it is
  // called for the oldest regions for as long as the request does not fit.
  template <class Wait>
  int64_t take(int64_t bytes, Wait&& wait) {
    MOE_REQUIRE(bytes >= 0, "staging ring: negative size");
    const int64_t need = (bytes + kAlign - 1) / kAlign * kAlign;
    if (need > capacity_) return -1;
    for (;;) {
      if (live_.empty()) return place(0, need);
      const int64_t oldest = live_.front().offset, head = live_.back().end;
      if (head > oldest) {  // live bytes are [oldest, head)
        if (capacity_ - head >= need) return place(head, need);
        if (oldest >= need) return place(0, need);
      } else if (oldest - head >= need) {  // wrapped: live bytes are [oldest, capacity) and [0, head)
        return place(head, need);
      }
      const Region r = live_.front();
      MOE_REQUIRE(r.fenced, "staging ring: full of regions whose copies have no fence yet");
      wait(r.fence);
      while (!live_.empty() && live_.front().fenced && live_.front().fence == r.fence) live_.pop_front();
    }
  }
  // Every region taken since the last call is read by work that completes at `fence`.
  void fence(uint64_t fence) {
    for (auto it = live_.rbegin(); it != live_.rend() && !it->fenced; ++it) it->fenced = true, it->fence = fence;
  }
  // Regions whose fence has completed (done(fence) true) are free again, oldest first.
  template <class Done>
  void retire(Done&& done) {
    while (!live_.empty() && live_.front().fenced && done(live_.front().fence)) live_.pop_front();
  }
  int64_t live_bytes() const {
    int64_t n = 0;
    for (const Region& r : live_) n += r.end - r.offset;
    return n;
  }

 private:
  struct Region {
    int64_t offset, end;
    bool fenced;
    uint64_t fence;
  };
  int64_t place(int64_t at, int64_t need) {
    live_.push_back(Region{at, at + need, false, 0});
    return at;
  }

  int64_t capacity_;
  std::deque<Region> live_;  // in the order taken
};

}  // namespace moe
