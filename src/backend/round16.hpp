// Rounding of an fp32 value to the nearest fp16 or bf16 value (round to nearest, ties to even),
// returned as fp32: what a store to a 16-bit buffer keeps. The CPU backend's emulated 16-bit mode
// applies it on every store; tests compare it with the CUDA conversions.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/host_device.hpp"

namespace moe {

// Unit roundoff of the format: fp16 keeps 11 significant bits (u = 2^-11), bf16 8 (u = 2^-8).
constexpr double kFp16UnitRoundoff = 1.0 / 2048;
constexpr double kBf16UnitRoundoff = 1.0 / 256;

inline uint32_t float_bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}
inline float bits_float(uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}

// Keeps the top 32 - drop bits of a finite float's encoding, rounding the dropped ones to nearest,
// ties to even. A carry into the exponent is the correct next binade (or infinity).
inline float round_mantissa(float x, int drop) {
  const uint32_t b = float_bits(x);
  const uint32_t half = (1u << (drop - 1)) - 1;
  const uint32_t odd = (b >> drop) & 1u;
  return bits_float((b + half + odd) & ~((1u << drop) - 1));
}

inline float round_to_bf16(float x) {
  if (std::isnan(x)) return x;
  return round_mantissa(x, 16);
}

inline float round_to_fp16(float x) {
  if (std::isnan(x) || std::isinf(x)) return x;
  const float a = std::fabs(x);
  if (a >= 65520.0f) return std::copysign(INFINITY, x);   // above the largest fp16 (65504) + half an ulp
  if (a < 6.103515625e-05f) {                              // 2^-14: subnormal fp16, quantum 2^-24
    return std::nearbyint(x * 16777216.0f) / 16777216.0f;  // exact scalings; nearbyint ties to even
  }
  return round_mantissa(x, 13);  // 23 - 10 mantissa bits
}

}  // namespace moe
