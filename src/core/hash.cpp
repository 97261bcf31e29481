// splitmix64 and the uniform values derived from it, exactly as docs/model.md states them.
#include "core/hash.hpp"

namespace moe {

namespace {
constexpr double kTwoPow24 = 16777216.0;  // u has 24 random bits, so it is exact in float and double
}  // namespace

uint64_t splitmix64(uint64_t x) {
  // Unsigned arithmetic wraps modulo 2^64, which is what the contract requires.
  x += 0x9E3779B97F4A7C15ULL;
  uint64_t z = x;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t stream_key(uint64_t seed, uint64_t stream) { return splitmix64(seed ^ splitmix64(stream)); }

double uniform_at(uint64_t key, uint64_t index) {
  return (static_cast<double>(splitmix64(key + index) >> 40) + 0.5) / kTwoPow24;
}

}  // namespace moe
