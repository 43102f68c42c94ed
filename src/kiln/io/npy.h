// NumPy .npy files (numpy/lib/format.py): the magic "\x93NUMPY", a version (1.0, 2.0 or 3.0), a
// little-endian header length, a Python dict literal {'descr', 'fortran_order', 'shape'}, then
// the raw array bytes. Reading validates the header and the data size and converts Fortran-order
// arrays to row-major; writing is atomic and matches numpy.save's layout (64-byte aligned data).
#pragma once

#include <string>
#include <string_view>

#include "kiln/core/tensor.h"

namespace kiln::io {

// Supported descr: '<f4' '<f8' '<f2' '<i8' '<i4' '|i1' '|u1' '|b1' (and their '=', '<', '|'
// spellings for one-byte types). Other numpy dtypes (big-endian, uint16, complex, strings,
// structured) throw NotImplementedError; malformed files throw IoError naming `source`.
Tensor read_npy(const std::string& path);
Tensor parse_npy(std::string_view bytes, std::string_view source);

// bf16 has no numpy dtype: write_npy throws NotImplementedError for it (convert to f32 first).
void write_npy(const std::string& path, const Tensor& t);
std::string encode_npy(const Tensor& t);  // the bytes write_npy writes

}  // namespace kiln::io
