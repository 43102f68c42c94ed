// Crash-safe file replacement: write to a temporary file in the same directory, fsync it, rename
// it over the target, fsync the directory. Readers see the old file or the new one, never a mix.
#pragma once

#include <functional>
#include <ostream>
#include <string>

namespace kiln::io {

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write);
void write_file_atomic(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);  // throws IoError naming the file

}  // namespace kiln::io
