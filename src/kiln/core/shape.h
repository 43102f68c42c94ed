// Shapes and strides (in elements), and the rules that combine them: numel, contiguous strides,
// broadcasting, dimension wrapping.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace kiln {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

int64_t numel(const Shape& shape);
Strides contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3]"

// NumPy broadcasting: align trailing dims; each pair must be equal or one of them 1.
// `op` names the caller in the error message.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Maps a possibly negative dim into [0, ndim); throws IndexError naming `op` otherwise.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

}  // namespace kiln

namespace std {
inline ostream& operator<<(ostream& os, const kiln::Shape& s) { return os << kiln::shape_str(s); }
}  // namespace std
