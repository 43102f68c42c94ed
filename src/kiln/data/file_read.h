// Whole-file reads for the data readers (CSV, text). The io layer sits above data, so data keeps
// its own small helper; errors are kiln::IoError naming the file.
#pragma once

#include <cstdint>
#include <string>

namespace kiln::data {

constexpr int64_t kMaxTextFileBytes = int64_t{1} << 31;

std::string read_text_file(const std::string& path);

}  // namespace kiln::data
