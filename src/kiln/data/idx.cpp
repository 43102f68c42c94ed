// IDX reader and writer over zlib's gz* API, which reads gzip and raw files alike.
#include "kiln/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <vector>

namespace kiln::data {

namespace {

constexpr uint8_t kIdxTypeU8 = 0x08;

template <typename... Args>
[[noreturn]] void fail(const std::string& path, Args&&... args) {
  throw IoError(detail::concat(path, ": ", std::forward<Args>(args)...));
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// A gzFile that closes itself and turns zlib's errors into IoErrors naming the file.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    // zlib would silently read a non-gzip file raw; a name ending in .gz promises gzip.
    if (ends_with(path, ".gz")) check_gzip_magic();
    errno = 0;
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr) fail(path_, "cannot open: ", errno ? std::strerror(errno) : "out of memory");
  }
  ~GzReader() {
    if (file_ != nullptr) gzclose(file_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  // Reads up to n bytes; fewer only at the end of the data.
  size_t read(void* buf, size_t n) {
    size_t got = 0;
    char* p = static_cast<char*>(buf);
    while (got < n) {
      unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - got, 1u << 30));
      int r = gzread(file_, p + got, chunk);
      if (r < 0) fail_zlib();
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    if (got < n) {
      int err = Z_OK;
      gzerror(file_, &err);
      if (err != Z_OK) fail_zlib();
    }
    return got;
  }

 private:
  void check_gzip_magic() {
    std::FILE* f = std::fopen(path_.c_str(), "rb");
    if (f == nullptr) fail(path_, "cannot open: ", std::strerror(errno));
    unsigned char magic[2] = {0, 0};
    size_t n = std::fread(magic, 1, 2, f);
    std::fclose(f);
    if (n == 0) fail(path_, "empty file");
    if (n < 2 || magic[0] != 0x1f || magic[1] != 0x8b)
      fail(path_, "not a gzip file (the name ends in .gz but the gzip magic bytes 1f 8b are missing)");
  }

  [[noreturn]] void fail_zlib() {
    int err = Z_OK;
    const char* msg = gzerror(file_, &err);
    if (err == Z_ERRNO) fail(path_, "read error: ", std::strerror(errno));
    fail(path_, "corrupt gzip data: ", msg != nullptr ? msg : "unknown zlib error");
  }

  std::string path_;
  gzFile file_ = nullptr;
};

uint32_t read_be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string hex(uint32_t v, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%0*X", digits, v);
  return buf;
}
std::string hex32(uint32_t v) { return hex(v, 8); }

}  // namespace

Tensor read_idx(const std::string& path, int expected_ndim) {
  GzReader in(path);
  unsigned char head[4];
  size_t got = in.read(head, 4);
  if (got == 0) fail(path, "empty file");
  if (got < 4) fail(path, "truncated: the 4-byte magic number is cut off after ", got, " bytes");
  const uint32_t magic = read_be32(head);
  if (head[0] != 0 || head[1] != 0)
    fail(path, "bad magic number ", hex32(magic), " (an IDX file starts with two zero bytes)");
  if (head[2] != kIdxTypeU8)
    fail(path, "unsupported IDX data type byte ", hex(head[2], 2), " (only 0x08 = u8 is supported)");
  const int ndim = head[3];
  if (ndim < 1 || ndim > kIdxMaxDims)
    fail(path, "bad dimension count ", ndim, " (expected 1 to ", kIdxMaxDims, ")");
  if (expected_ndim > 0 && ndim != expected_ndim)
    fail(path, "bad magic number ", hex32(magic), " (expected ", hex32(0x800u | static_cast<uint32_t>(expected_ndim)),
         ": u8 data with ", expected_ndim, expected_ndim == 1 ? " dimension)" : " dimensions)");

  std::array<unsigned char, 4 * kIdxMaxDims> dim_bytes{};
  got = in.read(dim_bytes.data(), 4 * static_cast<size_t>(ndim));
  if (got < 4 * static_cast<size_t>(ndim))
    fail(path, "truncated: expected ", 4 * ndim, " bytes of dimensions after the magic number, got ", got);
  Shape shape;
  int64_t total = 1;
  for (int d = 0; d < ndim; ++d) {
    int64_t n = read_be32(dim_bytes.data() + 4 * d);
    shape.push_back(n);
    total *= n;  // at most 4 factors below 2^32, checked after each step
    if (total > kIdxMaxBytes)
      fail(path, "dimensions ", shape_str(shape), "... describe more than ", kIdxMaxBytes, " bytes (the size limit)");
  }
  const int64_t header_bytes = 4 + 4 * int64_t{ndim};

  Tensor out = Tensor::empty(shape, DType::u8);
  got = total > 0 ? in.read(out.raw_data(), static_cast<size_t>(total)) : 0;
  if (static_cast<int64_t>(got) < total)
    fail(path, "truncated: expected ", total, " bytes of data after the ", header_bytes, "-byte header (",
         shape_str(shape), "), got ", got);
  unsigned char extra;
  if (in.read(&extra, 1) != 0)
    fail(path, "trailing data: the header declares ", shape_str(shape), " = ", total,
         " bytes, but the file holds more");
  return out;
}

void write_idx(const std::string& path, const Tensor& data, bool gzip) {
  KILN_CHECK_TYPE(data.dtype() == DType::u8, "write_idx: only u8 tensors can be written, got ", data.str());
  KILN_CHECK(data.dim() >= 1 && data.dim() <= kIdxMaxDims, "write_idx: ", data.str(), " needs 1 to ",
             kIdxMaxDims, " dimensions");
  std::vector<unsigned char> bytes = {0, 0, kIdxTypeU8, static_cast<unsigned char>(data.dim())};
  for (int64_t n : data.shape())
    for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<unsigned char>(static_cast<uint64_t>(n) >> s));
  Tensor c = contiguous_raw(data);
  const auto* p = static_cast<const unsigned char*>(c.raw_data());
  bytes.insert(bytes.end(), p, p + c.numel());

  gzFile f = gzopen(path.c_str(), gzip ? "wb6" : "wbT");  // T: write raw, no gzip framing
  if (f == nullptr) fail(path, "cannot create: ", std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    unsigned chunk = static_cast<unsigned>(std::min<size_t>(bytes.size() - done, 1u << 30));
    int w = gzwrite(f, bytes.data() + done, chunk);
    if (w <= 0) {
      gzclose(f);
      fail(path, "write failed");
    }
    done += static_cast<size_t>(w);
  }
  if (gzclose(f) != Z_OK) fail(path, "write failed on close");
}

}  // namespace kiln::data
