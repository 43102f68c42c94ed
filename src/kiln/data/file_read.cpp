// read_text_file: one stat, one read, IoError on any failure.
#include "kiln/data/file_read.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <system_error>

#include <filesystem>

#include "kiln/core/error.h"

namespace kiln::data {

std::string read_text_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw IoError(detail::concat(path, ": is a directory, not a file"));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(detail::concat(path, ": cannot open: ", std::strerror(errno)));
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  if (size < 0) throw IoError(detail::concat(path, ": cannot determine the file size"));
  if (size > kMaxTextFileBytes)
    throw IoError(detail::concat(path, ": file of ", size, " bytes exceeds the ", kMaxTextFileBytes, "-byte limit"));
  in.seekg(0, std::ios::beg);
  std::string text(static_cast<size_t>(size), '\0');
  if (size > 0 && !in.read(text.data(), size))
    throw IoError(detail::concat(path, ": read failed after ", in.gcount(), " of ", size, " bytes"));
  return text;
}

}  // namespace kiln::data
