// Rounding to fp16 / bf16 (round16.hpp) at known values: exact, halfway (ties to even), subnormal,
// overflow; and the CPU backend's emulated 16-bit mode rounding every store.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "backend/cpu/cpu_compute.hpp"
#include "backend/round16.hpp"

using namespace moe;

TEST_CASE("round_to_fp16 keeps 11 significant bits, ties to even", "[round16]") {
  CHECK(round_to_fp16(1.0f) == 1.0f);
  CHECK(round_to_fp16(65504.0f) == 65504.0f);                       // largest fp16
  CHECK(round_to_fp16(1.0f + 1.0f / 2048) == 1.0f);                  // halfway: to the even 1.0
  CHECK(round_to_fp16(1.0f + 3.0f / 2048) == 1.0f + 2.0f / 1024);    // halfway: to the even 1+2^-9
  CHECK(round_to_fp16(1.0f + 1.5f / 2048) == 1.0f + 1.0f / 1024);    // above halfway: up
  CHECK(round_to_fp16(-3.14159265f) == -3.140625f);
  CHECK(round_to_fp16(65519.0f) == 65504.0f);
  CHECK(std::isinf(round_to_fp16(65520.0f)));
  CHECK(std::isinf(round_to_fp16(-1e6f)));
  CHECK(round_to_fp16(std::ldexp(1.0f, -24)) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(round_to_fp16(std::ldexp(1.0f, -26)) == 0.0f);
  CHECK(round_to_fp16(std::ldexp(3.0f, -25)) == std::ldexp(2.0f, -24));  // 1.5 quanta: to even 2
  CHECK(std::isnan(round_to_fp16(NAN)));
}

TEST_CASE("round_to_bf16 keeps 8 significant bits, ties to even", "[round16]") {
  CHECK(round_to_bf16(1.0f) == 1.0f);
  CHECK(round_to_bf16(1.0f + 1.0f / 256) == 1.0f);                   // halfway: to even
  CHECK(round_to_bf16(1.0f + 3.0f / 256) == 1.0f + 2.0f / 128);
  CHECK(round_to_bf16(-3.14159265f) == -3.140625f);
  CHECK(std::isinf(round_to_bf16(3.4028235e38f)));                   // rounds past the largest bf16
  CHECK(std::isnan(round_to_bf16(NAN)));
}

TEST_CASE("rounding error is within half a unit in the last place", "[round16]") {
  for (int i = 1; i < 20000; ++i) {
    const float x = std::sin(0.7f * i) * std::ldexp(1.0f, i % 20 - 10);
    CHECK(std::fabs(round_to_fp16(x) - x) <= kFp16UnitRoundoff * std::fabs(x) + std::ldexp(1.0f, -25));
    CHECK(std::fabs(round_to_bf16(x) - x) <= kBf16UnitRoundoff * std::fabs(x));
  }
}

TEST_CASE("cpu backend in emulated fp16 rounds what its kernels store", "[round16][cpu_backend]") {
  auto exact = make_cpu_compute(DType::f32);
  auto half = make_cpu_compute(DType::f16);
  CHECK(exact->precision() == DType::f32);
  CHECK(half->precision() == DType::f16);
  CHECK(half->dtype() == DType::f32);  // storage stays fp32
  const std::vector<float> a = {1.0f + 1.0f / 4096, 0.3f, -0.7f, 2.5f};
  const std::vector<float> b = {0.1f, 0.2f, 0.3f, 0.4f};
  for (ComputeBackend* c : {exact.get(), half.get()}) {
    DeviceMat x = c->alloc_mat(2, 2), y = c->alloc_mat(2, 2), z = c->alloc_mat(2, 2);
    c->upload(a.data(), x.view, Stream::compute);
    c->upload(b.data(), y.view, Stream::compute);
    c->gemm(x.view, y.view, z.view, false);
    std::vector<float> up(4), out(4);
    c->download(x.view, up.data(), Stream::compute);
    c->download(z.view, out.data(), Stream::compute);
    for (int i = 0; i < 4; ++i) {
      if (c == half.get()) {
        CHECK(up[i] == round_to_fp16(a[i]));
        CHECK(out[i] == round_to_fp16(out[i]));  // stored values are fp16 values
      } else {
        CHECK(up[i] == a[i]);
      }
    }
    if (c == exact.get()) CHECK(up[0] != round_to_fp16(up[0]));  // the input is not an fp16 value
  }
}
