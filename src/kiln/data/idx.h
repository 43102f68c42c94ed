// IDX files (the MNIST / Fashion-MNIST format): a big-endian header (two zero bytes, a data-type
// byte, a dimension count, one u32 per dimension) followed by exactly prod(dims) elements. Files
// may be gzip-compressed (read through zlib) or raw. Only u8 data (type byte 0x08) is supported.
#pragma once

#include <cstdint>
#include <string>

#include "kiln/core/tensor.h"

namespace kiln::data {

constexpr int kIdxMaxDims = 4;
constexpr int64_t kIdxMaxBytes = int64_t{1} << 31;  // larger data is refused, not allocated

// Reads an IDX file into a u8 tensor shaped by its dimensions. `expected_ndim` (> 0) also fixes
// the magic number: 0x00000803 for 3 (images), 0x00000801 for 1 (labels). Every malformed file
// (bad magic, wrong type byte, too many dims, truncated, trailing bytes, broken gzip) throws
// kiln::IoError with one line naming the file and the problem.
Tensor read_idx(const std::string& path, int expected_ndim = -1);

// Writes a u8 tensor as an IDX file, gzip-compressed when `gzip` (used by tests and tools).
void write_idx(const std::string& path, const Tensor& data, bool gzip);

}  // namespace kiln::data
