// The counter-based hash every deterministic value comes from (docs/model.md "Deterministic
// generation"): weights, prompts, synthetic routing and placement profiles are pure functions of
// (seed, stream, index), so any rank computes any value without communication.
#pragma once
#include <cstdint>

namespace moe {

// splitmix64 finaliser; arithmetic modulo 2^64.
uint64_t splitmix64(uint64_t x);
// Key of one stream of values: splitmix64(seed ^ splitmix64(stream)).
uint64_t stream_key(uint64_t seed, uint64_t stream);
// u in (0, 1): ((splitmix64(key + i) >> 40) + 0.5) / 2^24
double uniform_at(uint64_t key, uint64_t index);

}  // namespace moe
