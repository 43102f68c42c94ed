// Atomic replacement through a temporary file. The writer callback streams into a small
// streambuf over the raw file descriptor, so the bytes can be fsync'ed before the rename makes
// them visible (an ofstream cannot be fsync'ed).
#include "kiln/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <streambuf>
#include <vector>

#include "kiln/core/error.h"

namespace kiln::io {

namespace {

[[noreturn]] void fail_errno(const std::string& path, const char* what, int err) {
  throw IoError(detail::concat(path, ": ", what, ": ", std::strerror(err)));
}

// Writes everything or reports errno; retries short writes and EINTR.
int write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

class FdStreambuf : public std::streambuf {
 public:
  explicit FdStreambuf(int fd) : fd_(fd), buf_(1 << 16) { setp(buf_.data(), buf_.data() + buf_.size()); }
  int error() const { return error_; }

 protected:
  int_type overflow(int_type ch) override {
    if (drain() != 0) return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    // Large writes (tensor data) bypass the buffer.
    if (n >= static_cast<std::streamsize>(buf_.size())) {
      if (drain() != 0) return 0;
      if (int e = write_all(fd_, s, static_cast<size_t>(n)); e != 0) {
        error_ = e;
        return 0;
      }
      return n;
    }
    return std::streambuf::xsputn(s, n);
  }
  int sync() override { return drain() == 0 ? 0 : -1; }

 private:
  int drain() {
    if (error_ != 0) return error_;
    const size_t n = static_cast<size_t>(pptr() - pbase());
    if (n > 0) error_ = write_all(fd_, pbase(), n);
    setp(buf_.data(), buf_.data() + buf_.size());
    return error_;
  }

  int fd_;
  std::vector<char> buf_;
  int error_ = 0;
};

std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write) {
  KILN_CHECK(!path.empty(), "write_file_atomic: empty path");
  const std::string tmp = detail::concat(path, ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail_errno(path, "cannot create temporary file", errno);
  // Until the rename, any failure removes the temporary file and leaves `path` untouched.
  auto abandon = [&] {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
  };
  try {
    FdStreambuf buf(fd);
    std::ostream os(&buf);
    os.exceptions(std::ios::goodbit);
    write(os);
    os.flush();
    if (buf.error() != 0) fail_errno(path, "write failed", buf.error());
    if (!os) throw IoError(detail::concat(path, ": write failed (stream error)"));
    if (::fsync(fd) != 0) fail_errno(path, "fsync failed", errno);
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) fail_errno(path, "close failed", errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0) fail_errno(path, "cannot rename the temporary file over it", errno);
  } catch (...) {
    abandon();
    throw;
  }
  // The rename is durable only once the directory entry is on disk.
  const std::string dir = parent_dir(path);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) fail_errno(dir, "cannot open directory to fsync", errno);
  int rc = ::fsync(dfd);
  int err = errno;
  ::close(dfd);
  if (rc != 0 && err != EINVAL) fail_errno(dir, "fsync of directory failed", err);
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_file_atomic(path, [&](std::ostream& os) { os.write(bytes.data(), static_cast<std::streamsize>(bytes.size())); });
}

std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_errno(path, "cannot open", errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail_errno(path, "cannot stat", e);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw IoError(detail::concat(path, ": is a directory, not a file"));
  }
  std::string out;
  if (S_ISREG(st.st_mode)) out.reserve(static_cast<size_t>(st.st_size));
  char chunk[1 << 16];
  for (;;) {
    ssize_t r = ::read(fd, chunk, sizeof chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      fail_errno(path, "read failed", e);
    }
    if (r == 0) break;
    out.append(chunk, static_cast<size_t>(r));
  }
  ::close(fd);
  return out;
}

}  // namespace kiln::io
