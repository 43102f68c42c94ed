// TensorBoard event files for scalars, written without a protobuf dependency: each record is
// u64 length, masked CRC32C of the length, the serialised Event, masked CRC32C of the Event.
// The Event and Summary messages are encoded by a few lines of hand-written protobuf.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace kiln::io {

uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);  // Castagnoli; crc32c("123456789") = 0xE3069283
uint32_t masked_crc32c(const void* data, size_t n);             // ((c >> 15) | (c << 17)) + 0xa282ead8

// Protobuf encodings of the two messages used (exposed for tests).
std::string encode_file_version_event(double wall_time, const std::string& version);
std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value);
std::string frame_record(const std::string& data);  // the TFRecord framing above

class TensorBoardWriter {
 public:
  // Creates logdir (and parents) and events.out.tfevents.<unix time>.<host> inside it; the first
  // record is the file_version event "brain.Event:2".
  explicit TensorBoardWriter(const std::string& logdir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // wall_time < 0 means now. Every record is flushed, so a crash loses nothing already added.
  void add_scalar(const std::string& tag, double value, int64_t step, double wall_time = -1);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace kiln::io
