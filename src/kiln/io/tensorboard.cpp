// TensorBoard scalar event writer: CRC32C, a minimal protobuf encoder, TFRecord framing.
#include "kiln/io/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "kiln/core/error.h"

namespace kiln::io {

namespace {

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected Castagnoli polynomial
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();

// ---- protobuf wire format: tag = (field << 3) | wire type
enum Wire : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_tag(std::string& out, uint32_t field, Wire wire) { put_varint(out, (uint64_t{field} << 3) | wire); }
template <typename T>
void put_fixed(std::string& out, T v) {  // little-endian, as the wire format
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
void put_bytes(std::string& out, uint32_t field, const std::string& s) {
  put_tag(out, field, kLengthDelimited);
  put_varint(out, s.size());
  out += s;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = kCrcTable[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
std::string encode_file_version_event(double wall_time, const std::string& version) {
  std::string e;
  put_tag(e, 1, kFixed64);
  put_fixed(e, wall_time);
  put_bytes(e, 3, version);
  return e;
}

// Summary { repeated Value value = 1; }  Value { string tag = 1; float simple_value = 2; }
std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value) {
  std::string v;
  put_bytes(v, 1, tag);
  put_tag(v, 2, kFixed32);
  put_fixed(v, value);
  std::string summary;
  put_bytes(summary, 1, v);
  std::string e;
  put_tag(e, 1, kFixed64);
  put_fixed(e, wall_time);
  put_tag(e, 2, kVarint);
  put_varint(e, static_cast<uint64_t>(step));  // int64: negative values take 10 bytes, as protobuf
  put_bytes(e, 5, summary);
  return e;
}

std::string frame_record(const std::string& data) {
  std::string r;
  put_fixed(r, static_cast<uint64_t>(data.size()));
  put_fixed(r, masked_crc32c(r.data(), 8));
  r += data;
  put_fixed(r, masked_crc32c(data.data(), data.size()));
  return r;
}

TensorBoardWriter::TensorBoardWriter(const std::string& logdir) {
  std::error_code ec;
  std::filesystem::create_directories(logdir, ec);
  if (ec) throw IoError(detail::concat(logdir, ": cannot create log directory: ", ec.message()));
  char host[256] = "localhost";
  if (gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "localhost");
  host[sizeof host - 1] = '\0';
  const double t = now_seconds();
  path_ = detail::concat(logdir, "/events.out.tfevents.", static_cast<int64_t>(t), ".", host);
  file_ = std::fopen(path_.c_str(), "ab");
  if (file_ == nullptr) throw IoError(detail::concat(path_, ": cannot create: ", std::strerror(errno)));
  write_record(encode_file_version_event(t, "brain.Event:2"));
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step, double wall_time) {
  write_record(encode_scalar_event(wall_time < 0 ? now_seconds() : wall_time, step, tag, static_cast<float>(value)));
  flush();
}

void TensorBoardWriter::flush() {
  if (std::fflush(file_) != 0) throw IoError(detail::concat(path_, ": write failed: ", std::strerror(errno)));
}

void TensorBoardWriter::write_record(const std::string& data) {
  const std::string r = frame_record(data);
  if (std::fwrite(r.data(), 1, r.size(), file_) != r.size())
    throw IoError(detail::concat(path_, ": write failed: ", std::strerror(errno)));
}

}  // namespace kiln::io
