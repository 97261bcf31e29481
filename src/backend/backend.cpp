// Backend-independent helpers: dtype names and sizes, matrix views.
#include "backend/backend.hpp"

#include "core/error.hpp"

namespace moe {

int dtype_bytes(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
  }
  return 4;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "fp32";
    case DType::f16: return "fp16";
    case DType::bf16: return "bf16";
  }
  return "?";
}

DType parse_dtype(const std::string& s) {
  if (s == "fp32") return DType::f32;
  if (s == "fp16") return DType::f16;
  if (s == "bf16") return DType::bf16;
  throw ConfigError("model.dtype", "unknown dtype '" + s + "' (fp32 | fp16 | bf16)");
}

Mat Mat::slice_rows(int64_t first_row, int64_t num_rows) const {
  MOE_REQUIRE(first_row >= 0 && num_rows >= 0 && first_row + num_rows <= rows,
              "row slice [" + std::to_string(first_row) + ", " + std::to_string(first_row + num_rows) +
                  ") outside a matrix of " + std::to_string(rows) + " rows");
  Mat m = *this;
  m.data = static_cast<char*>(data) + first_row * cols * dtype_bytes(dtype);
  m.rows = num_rows;
  return m;
}

}  // namespace moe
