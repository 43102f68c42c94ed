// TensorBoard event files: CRC32C test vectors, hand-encoded protobuf bytes, and the written file
// read back by a small independent TFRecord + protobuf reader.
#include <cstring>

#include <gtest/gtest.h>

#include "data/test_util.h"
#include "kiln/io/tensorboard.h"

using namespace kiln;

namespace {

std::string bytes_of(std::initializer_list<int> v) {
  std::string s;
  for (int b : v) s.push_back(static_cast<char>(b));
  return s;
}

// Bitwise CRC32C, the textbook definition, as a reference for the table-driven one.
uint32_t crc32c_bitwise(const std::string& s) {
  uint32_t crc = 0xffffffffu;
  for (unsigned char c : s) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

uint32_t mask(uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; }

struct Event {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version, tag;
  float value = 0;
  bool has_value = false;
};

// A minimal protobuf reader for the Event fields we write.
struct Reader {
  const std::string& s;
  size_t pos = 0;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      EXPECT_LT(pos, s.size());
      uint8_t b = static_cast<uint8_t>(s[pos++]);
      v |= uint64_t{b & 0x7fu} << shift;
      if (!(b & 0x80)) return v;
    }
  }
  template <typename T>
  T fixed() {
    T v;
    std::memcpy(&v, s.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string bytes() {
    size_t n = varint();
    std::string out = s.substr(pos, n);
    pos += n;
    return out;
  }
};

Event parse_event(const std::string& data) {
  Event e;
  Reader r{data};
  while (r.pos < data.size()) {
    uint64_t tag = r.varint();
    switch (tag) {
      case (1 << 3) | 1: e.wall_time = r.fixed<double>(); break;
      case (2 << 3) | 0: e.step = static_cast<int64_t>(r.varint()); break;
      case (3 << 3) | 2: e.file_version = r.bytes(); break;
      case (5 << 3) | 2: {
        std::string summary = r.bytes();
        Reader sr{summary};
        EXPECT_EQ(sr.varint(), (1u << 3) | 2);  // Summary.value
        std::string value = sr.bytes();
        Reader vr{value};
        while (vr.pos < value.size()) {
          uint64_t vt = vr.varint();
          if (vt == ((1 << 3) | 2)) e.tag = vr.bytes();
          else if (vt == ((2 << 3) | 5)) {
            e.value = vr.fixed<float>();
            e.has_value = true;
          } else ADD_FAILURE() << "unexpected Value field tag " << vt;
        }
        break;
      }
      default: ADD_FAILURE() << "unexpected Event field tag " << tag; return e;
    }
  }
  return e;
}

// Splits an event file into records, checking both masked CRCs of each.
std::vector<std::string> read_records(const std::string& file) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < file.size()) {
    EXPECT_LE(pos + 12, file.size());
    uint64_t len;
    uint32_t len_crc, data_crc;
    std::memcpy(&len, file.data() + pos, 8);
    std::memcpy(&len_crc, file.data() + pos + 8, 4);
    EXPECT_EQ(len_crc, mask(crc32c_bitwise(file.substr(pos, 8))));
    std::string data = file.substr(pos + 12, len);
    std::memcpy(&data_crc, file.data() + pos + 12 + len, 4);
    EXPECT_EQ(data_crc, mask(crc32c_bitwise(data)));
    out.push_back(data);
    pos += 12 + len + 4;
  }
  EXPECT_EQ(pos, file.size());
  return out;
}

}  // namespace

TEST(TensorBoard, Crc32cKnownVectors) {
  EXPECT_EQ(io::crc32c("123456789", 9), 0xE3069283u);
  // RFC 3720 (iSCSI) appendix B.4 vectors.
  EXPECT_EQ(io::crc32c(std::string(32, '\0').data(), 32), 0x8A9136AAu);
  EXPECT_EQ(io::crc32c(std::string(32, '\xff').data(), 32), 0x62A8AB43u);
  std::string inc(32, '\0');
  for (int i = 0; i < 32; ++i) inc[i] = static_cast<char>(i);
  EXPECT_EQ(io::crc32c(inc.data(), 32), 0x46DD794Eu);
  EXPECT_EQ(io::crc32c("", 0), 0u);
  // Incremental use and the masking formula.
  EXPECT_EQ(io::crc32c("6789", 4, io::crc32c("12345", 5)), 0xE3069283u);
  EXPECT_EQ(io::masked_crc32c("123456789", 9), mask(0xE3069283u));
  std::string s = "the quick brown fox";
  EXPECT_EQ(io::crc32c(s.data(), s.size()), crc32c_bitwise(s));
}

TEST(TensorBoard, EncodesEventsByHand) {
  // Event{wall_time=1.5, step=3, summary{value{tag="a", simple_value=2}}}, encoded on paper.
  EXPECT_EQ(io::encode_scalar_event(1.5, 3, "a", 2.0f),
            bytes_of({0x09, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F,  // 1: fixed64 1.5
                      0x10, 0x03,                          // 2: varint 3
                      0x2A, 0x0A,                          // 5: summary, 10 bytes
                      0x0A, 0x08,                          //   1: value, 8 bytes
                      0x0A, 0x01, 'a',                     //     1: tag "a"
                      0x15, 0, 0, 0, 0x40}));              //     2: fixed32 2.0f
  EXPECT_EQ(io::encode_file_version_event(0.0, "brain.Event:2"),
            bytes_of({0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x1A, 13}) + "brain.Event:2");
  // Steps above 127 take several varint bytes.
  Event e = parse_event(io::encode_scalar_event(0, 300, "t", 0));
  EXPECT_EQ(e.step, 300);
  std::string framed = io::frame_record("abc");
  EXPECT_EQ(framed.size(), 8u + 4 + 3 + 4);
  EXPECT_EQ(read_records(framed), std::vector<std::string>{"abc"});
}

TEST(TensorBoard, WriterProducesReadableFile) {
  test::ScratchDir dir;
  const std::string logdir = dir.file("run/tb");  // created on demand
  io::TensorBoardWriter tb(logdir);
  const std::string name = std::filesystem::path(tb.path()).filename().string();
  EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
  EXPECT_EQ(std::filesystem::path(tb.path()).parent_path(), std::filesystem::path(logdir));
  tb.add_scalar("train/loss", 2.5, 1, 1000.25);
  tb.add_scalar("train/loss", 1.25, 2, 1001.5);
  tb.add_scalar("test/accuracy", 0.875, 2);
  // Flushed after each add: readable while the writer is still open.
  auto records = read_records(test::read_bytes(tb.path()));
  ASSERT_EQ(records.size(), 4u);
  Event first = parse_event(records[0]);
  EXPECT_EQ(first.file_version, "brain.Event:2");
  EXPECT_GT(first.wall_time, 1.6e9);
  Event a = parse_event(records[1]), b = parse_event(records[2]), c = parse_event(records[3]);
  EXPECT_EQ(a.tag, "train/loss");
  EXPECT_EQ(a.value, 2.5f);
  EXPECT_EQ(a.step, 1);
  EXPECT_EQ(a.wall_time, 1000.25);
  EXPECT_EQ(b.value, 1.25f);
  EXPECT_EQ(b.step, 2);
  EXPECT_EQ(c.tag, "test/accuracy");
  EXPECT_EQ(c.value, 0.875f);
  EXPECT_GE(c.wall_time, first.wall_time);
}
