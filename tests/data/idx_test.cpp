// IDX reader: round trips through hand-built files (raw and gzip) and every malformed-file case.
#include <zlib.h>

#include <gtest/gtest.h>

#include "data/test_util.h"
#include "kiln/data/idx.h"

using namespace kiln;
using kiln::test::ScratchDir;

namespace {

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// An IDX u8 file built byte by byte, independently of write_idx.
std::string idx_bytes(const std::vector<uint32_t>& dims, const std::string& payload, uint8_t type = 0x08) {
  std::string s = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) s += be32(d);
  return s + payload;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::string counting_payload(size_t n) {
  std::string p(n, '\0');
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<char>((i * 7 + 3) % 256);
  return p;
}

// Expects read_idx to throw IoError whose single-line message names the file and contains `what`.
void expect_idx_error(const std::string& path, const std::string& what, int ndim = -1) {
  try {
    data::read_idx(path, ndim);
    FAIL() << "expected an IoError for " << path;
  } catch (const IoError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "message: " << msg << "\nexpected to contain: " << what;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

}  // namespace

TEST(Idx, ReadsRawAndGzipImages) {
  ScratchDir dir;
  const std::string payload = counting_payload(2 * 3 * 4);
  const std::string bytes = idx_bytes({2, 3, 4}, payload);
  test::write_bytes(dir.file("a-idx3-ubyte"), bytes);
  write_gz(dir.file("a-idx3-ubyte.gz"), bytes);
  for (const char* name : {"a-idx3-ubyte", "a-idx3-ubyte.gz"}) {
    Tensor t = data::read_idx(dir.file(name), 3);
    EXPECT_EQ(t.dtype(), DType::u8);
    EXPECT_EQ(t.shape(), (Shape{2, 3, 4}));
    auto v = t.to_vector<int>();
    for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(v[i], static_cast<uint8_t>(payload[i])) << name << " " << i;
  }
}

TEST(Idx, ReadsLabelsAndWriterRoundTrips) {
  ScratchDir dir;
  test::write_bytes(dir.file("l-idx1-ubyte"), idx_bytes({5}, std::string("\x09\x00\x03\x07\x01", 5)));
  Tensor l = data::read_idx(dir.file("l-idx1-ubyte"), 1);
  EXPECT_EQ(l.to_vector<int>(), (std::vector<int>{9, 0, 3, 7, 1}));

  // write_idx produces byte-identical raw files and gzip files that read back equal.
  Tensor t = Tensor::from_vector<uint8_t>({1, 2, 3, 250, 251, 252}, {2, 3});
  data::write_idx(dir.file("w.idx"), t, false);
  EXPECT_EQ(test::read_bytes(dir.file("w.idx")), idx_bytes({2, 3}, std::string("\x01\x02\x03\xfa\xfb\xfc", 6)));
  data::write_idx(dir.file("w.idx.gz"), t, true);
  EXPECT_EQ(test::read_bytes(dir.file("w.idx.gz")).substr(0, 2), "\x1f\x8b");
  EXPECT_EQ(data::read_idx(dir.file("w.idx.gz")).to_vector<int>(), t.to_vector<int>());
}

TEST(Idx, RejectsMalformedFiles) {
  ScratchDir dir;
  const std::string good = idx_bytes({2, 3, 4}, counting_payload(24));
  struct Case {
    std::string name, bytes, what;
    int ndim;
  };
  std::vector<Case> cases = {
      {"empty", "", "empty file", 3},
      {"bad_magic", std::string("\x00\x01\x08\x03", 4) + good.substr(4), "bad magic number 0x00010803", 3},
      {"bad_magic_first", std::string("\x12\x00\x08\x03", 4) + good.substr(4), "bad magic number", -1},
      {"dtype_float", idx_bytes({2, 3, 4}, std::string(96, '\0'), 0x0D), "data type byte 0x0D", 3},
      {"dtype_i32", idx_bytes({2, 3, 4}, std::string(96, '\0'), 0x0C), "data type byte 0x0C", -1},
      {"too_many_dims", idx_bytes({1, 1, 1, 1, 1}, "x"), "bad dimension count 5", -1},
      {"zero_dims", idx_bytes({}, ""), "bad dimension count 0", -1},
      {"wrong_ndim", idx_bytes({24}, counting_payload(24)), "expected 0x00000803", 3},
      {"short_magic", std::string("\x00\x00", 2), "truncated", -1},
      {"short_dims", good.substr(0, 10), "truncated: expected 12 bytes of dimensions", 3},
      {"truncated_data", good.substr(0, good.size() - 5), "truncated: expected 24 bytes of data", 3},
      {"header_only", good.substr(0, 16), "got 0", 3},
      {"trailing", good + "z", "trailing data", 3},
      {"huge", idx_bytes({60000, 60000, 60000}, ""), "size limit", 3},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    test::write_bytes(dir.file(c.name), c.bytes);
    expect_idx_error(dir.file(c.name), c.what, c.ndim);
    // The same content gzip-compressed fails the same way.
    write_gz(dir.file(c.name + ".gz"), c.bytes);
    expect_idx_error(dir.file(c.name + ".gz"), c.what, c.ndim);
  }
}

TEST(Idx, RejectsBrokenGzipAndMissingFiles) {
  ScratchDir dir;
  const std::string good = idx_bytes({2, 3, 4}, counting_payload(24));
  // Raw IDX content under a .gz name: a clean error, not a raw read.
  test::write_bytes(dir.file("raw.gz"), good);
  expect_idx_error(dir.file("raw.gz"), "not a gzip file");
  test::write_bytes(dir.file("empty.gz"), "");
  expect_idx_error(dir.file("empty.gz"), "empty file");
  // A gzip stream cut short, and one with a corrupted body.
  write_gz(dir.file("ok.gz"), idx_bytes({40, 50}, counting_payload(2000)));
  std::string gz = test::read_bytes(dir.file("ok.gz"));
  test::write_bytes(dir.file("cut.gz"), gz.substr(0, gz.size() / 2));
  EXPECT_THROW(data::read_idx(dir.file("cut.gz")), IoError);
  test::write_bytes(dir.file("cut_trailer.gz"), gz.substr(0, gz.size() - 4));  // no length field
  EXPECT_THROW(data::read_idx(dir.file("cut_trailer.gz")), IoError);
  std::string bad = gz;
  bad[bad.size() - 6] ^= 0x55;  // inside the CRC32 trailer
  test::write_bytes(dir.file("badcrc.gz"), bad);
  EXPECT_THROW(data::read_idx(dir.file("badcrc.gz")), IoError);
  for (size_t pos = 10; pos < gz.size(); pos += 7) {  // a flipped byte anywhere: data or an error
    std::string m = gz;
    m[pos] ^= 0x20;
    test::write_bytes(dir.file("flip.gz"), m);
    try {
      data::read_idx(dir.file("flip.gz"));
    } catch (const Error&) {
    }
  }
  expect_idx_error(dir.file("missing-idx1-ubyte.gz"), "cannot open");
  expect_idx_error(dir.file("missing-idx1-ubyte"), "cannot open");
}
