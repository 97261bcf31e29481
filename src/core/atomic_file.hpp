// Files written atomically (temp file + rename, removed when the job aborts): any text, and NumPy
// .npy arrays (format 1.0, little-endian float32, C order) for output dumps.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

// Writes [rows x cols] float32 atomically (temp file + rename). Throws Error on I/O failure.
void write_npy(const std::string& path, const std::vector<float>& data, int64_t rows, int64_t cols);

// Writes `text` to `path` atomically: `path`.tmp.<pid> then rename. Never leaves a half-written file.
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace moe
