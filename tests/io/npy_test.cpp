// .npy files: hand-written byte strings of known arrays (as numpy.save writes them), every
// supported descr, format versions 1-3, Fortran order, round trips, and the rejection rules.
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data/test_util.h"
#include "kiln/io/npy.h"

using namespace kiln;
using kiln::test::ScratchDir;

namespace {

std::string raw(const Tensor& t) {
  Tensor c = contiguous_raw(t);
  return std::string(static_cast<const char*>(c.raw_data()), static_cast<size_t>(c.numel()) * element_size(c.dtype()));
}

template <typename T>
std::string le_bytes(const std::vector<T>& v) {
  std::string s(v.size() * sizeof(T), '\0');
  if (!v.empty()) std::memcpy(s.data(), v.data(), s.size());
  return s;
}

// magic, version, little-endian header length (2 bytes for 1.0, 4 after), the dict padded with
// spaces to a 64-byte boundary and ended by '\n', then the data.
std::string npy(const std::string& dict, const std::string& data, int major = 1) {
  const size_t len_bytes = major == 1 ? 2 : 4;
  std::string header = dict;
  while ((6 + 2 + len_bytes + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  for (size_t i = 0; i < len_bytes; ++i) out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string dict(const std::string& descr, const std::string& shape, bool fortran = false) {
  return "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': " + shape + ", }";
}

template <typename E>
void expect_parse_error(const std::string& bytes, std::initializer_list<std::string> parts) {
  try {
    io::parse_npy(bytes, "a.npy");
    ADD_FAILURE() << "expected " << typeid(E).name();
  } catch (const E& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("a.npy"), std::string::npos) << msg;
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nwanted: " << p;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type (" << typeid(e).name() << "): " << e.what();
  }
}

// np.save(f, np.arange(6, dtype=np.float32).reshape(2, 3)), byte for byte: header length 0x76.
const std::string kArange23 =
    std::string("\x93NUMPY\x01\x00\x76\x00", 10) + "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" +
    std::string(58, ' ') + "\n" + le_bytes<float>({0, 1, 2, 3, 4, 5});

}  // namespace

TEST(Npy, ReadsAndWritesNumpySaveBytes) {
  ASSERT_EQ(kArange23.size(), 128u + 24u);
  Tensor t = io::parse_npy(kArange23, "arange.npy");
  EXPECT_EQ(t.dtype(), DType::f32);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(io::encode_npy(t), kArange23);
}

TEST(Npy, ReadsEverySupportedDescr) {
  struct Row {
    std::string descr;
    std::string data;
    DType dtype;
    std::vector<double> values;
  };
  const std::vector<Row> rows = {
      {"<f4", le_bytes<float>({1.5f, -2.0f}), DType::f32, {1.5, -2.0}},
      {"<f8", le_bytes<double>({1e-300, 3.0}), DType::f64, {1e-300, 3.0}},
      {"<f2", le_bytes<uint16_t>({0x3c00, 0xc000}), DType::f16, {1.0, -2.0}},
      {"<i8", le_bytes<int64_t>({-5, int64_t{1} << 40}), DType::i64, {-5, 1099511627776.0}},
      {"<i4", le_bytes<int32_t>({-7, 9}), DType::i32, {-7, 9}},
      {"|i1", std::string("\xff\x7f", 2), DType::i8, {-1, 127}},
      {"|u1", std::string("\xff\x01", 2), DType::u8, {255, 1}},
      {"<u1", std::string("\x00\x02", 2), DType::u8, {0, 2}},
      {"|b1", std::string("\x01\x00", 2), DType::b8, {1, 0}},
      {"<b1", std::string("\x00\x01", 2), DType::b8, {0, 1}},
      {"|?", std::string("\x01\x01", 2), DType::b8, {1, 1}},
      {">i1", std::string("\x80\x00", 2), DType::i8, {-128, 0}},  // byte order is moot for one byte
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.descr);
    Tensor t = io::parse_npy(npy(dict(r.descr, "(2,)"), r.data), "a.npy");
    EXPECT_EQ(t.dtype(), r.dtype);
    EXPECT_EQ(t.shape(), (Shape{2}));
    EXPECT_EQ(t.to_vector<double>(), r.values);
  }
}

TEST(Npy, HeaderSpellingsAndVersions) {
  const std::string data = le_bytes<int32_t>({1, 2, 3, 4});
  // Keys in any order, double quotes, no trailing comma, no space, Python 2 longs.
  for (const std::string& d : {std::string("{'shape': (2, 2), 'fortran_order': False, 'descr': '<i4'}"),
                              std::string("{\"descr\":\"<i4\",\"fortran_order\":False,\"shape\":(2,2)}"),
                              std::string("{'descr': '<i4', 'fortran_order': False, 'shape': (2L, 2L), }")}) {
    SCOPED_TRACE(d);
    Tensor t = io::parse_npy(npy(d, data), "a.npy");
    EXPECT_EQ(t.shape(), (Shape{2, 2}));
    EXPECT_EQ(t.to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 3, 4}));
  }
  for (int major : {2, 3}) {
    Tensor t = io::parse_npy(npy(dict("<i4", "(4,)"), data, major), "a.npy");
    EXPECT_EQ(t.to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 3, 4}));
  }
  // Headers need not be aligned to be read.
  const std::string d = dict("<i4", "(4,)");
  std::string unaligned = std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(d.size() + 1) + '\0' + d + "\n" + data;
  EXPECT_EQ(io::parse_npy(unaligned, "a.npy").numel(), 4);
}

TEST(Npy, ScalarsAndEmptyArrays) {
  Tensor s = io::parse_npy(npy(dict("<f8", "()"), le_bytes<double>({2.5})), "a.npy");
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item(), 2.5);
  Tensor e = io::parse_npy(npy(dict("<f4", "(0, 3)"), ""), "a.npy");
  EXPECT_EQ(e.shape(), (Shape{0, 3}));
  // numpy writes a 1-element tuple with a trailing comma, a 0-d shape as ().
  EXPECT_NE(io::encode_npy(Tensor::from_vector<float>({1, 2})).find("'shape': (2,), }"), std::string::npos);
  EXPECT_NE(io::encode_npy(Tensor::scalar(1.0)).find("'shape': (), }"), std::string::npos);
}

TEST(Npy, ConvertsFortranOrderToRowMajor) {
  // a = [[0, 1, 2], [3, 4, 5]] stored column by column.
  Tensor t = io::parse_npy(npy(dict("<f4", "(2, 3)", true), le_bytes<float>({0, 3, 1, 4, 2, 5})), "a.npy");
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  // 3-d: element (i, j, k) = 100i + 10j + k sits at i + 2j + 6k in Fortran order.
  std::vector<int64_t> col(24), row(24);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) {
        col[i + 2 * j + 6 * k] = 100 * i + 10 * j + k;
        row[(i * 3 + j) * 4 + k] = 100 * i + 10 * j + k;
      }
  Tensor t3 = io::parse_npy(npy(dict("<i8", "(2, 3, 4)", true), le_bytes(col)), "a.npy");
  EXPECT_EQ(t3.to_vector<int64_t>(), row);
  // Fortran order of a 1-d or empty array is the same bytes.
  EXPECT_EQ(io::parse_npy(npy(dict("|u1", "(3,)", true), "abc"), "a.npy").to_vector<int64_t>(),
            (std::vector<int64_t>{'a', 'b', 'c'}));
  EXPECT_EQ(io::parse_npy(npy(dict("<f4", "(0, 5)", true), ""), "a.npy").shape(), (Shape{0, 5}));
}

TEST(Npy, RoundTripsEveryDtypeThroughFiles) {
  ScratchDir dir;
  const std::vector<Tensor> tensors = {
      Tensor::from_vector<float>({0.5f, -0.0f, 3.25f, 7.0f, 8.0f, -1.0f}, {3, 2}),
      Tensor::from_vector<double>({1.0, -2.5}, {2}),
      to_dtype_raw(Tensor::from_vector<float>({1.0f, 65504.0f}, {1, 2}), DType::f16),
      Tensor::from_vector<int8_t>({-128, 127}, {2}),
      Tensor::from_vector<uint8_t>({0, 255, 3}, {3, 1}),
      Tensor::from_vector<int32_t>({INT32_MIN, INT32_MAX}, {2}),
      Tensor::from_vector<int64_t>({INT64_MIN, INT64_MAX}, {1, 1, 2}),
      Tensor::from_vector<bool>({true, false, true}, {3}),
      Tensor::scalar(4.0, DType::f64),
      Tensor::zeros({4, 0}, DType::i32),
      Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}).as_strided({3, 2}, {1, 3}, 0),  // a transpose
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    SCOPED_TRACE(tensors[i].str());
    const std::string path = dir.file("t" + std::to_string(i) + ".npy");
    io::write_npy(path, tensors[i]);
    const std::string bytes = test::read_bytes(path);
    // numpy's layout: the data starts on a 64-byte boundary, after a '\n'.
    const size_t header_len = static_cast<unsigned char>(bytes[8]) | static_cast<unsigned char>(bytes[9]) << 8;
    EXPECT_EQ((10 + header_len) % 64, 0u);
    EXPECT_EQ(bytes[10 + header_len - 1], '\n');
    Tensor back = io::read_npy(path);
    EXPECT_EQ(back.dtype(), tensors[i].dtype());
    EXPECT_EQ(back.shape(), tensors[i].shape());
    EXPECT_EQ(raw(back), raw(tensors[i]));
  }
  EXPECT_THROW(io::write_npy(dir.file("b.npy"), to_dtype_raw(Tensor::ones({2}), DType::bf16)), NotImplementedError);
  EXPECT_FALSE(std::filesystem::exists(dir.file("b.npy")));
}

TEST(Npy, RejectsBadFiles) {
  const std::string f4 = le_bytes<float>({1, 2});
  expect_parse_error<IoError>("\x93NUMPZ\x01\x00", {"magic"});
  expect_parse_error<IoError>("", {"magic"});
  expect_parse_error<IoError>(std::string("\x93NUMPY\x04\x00\x10\x00", 10), {"version 4.0"});
  expect_parse_error<IoError>(std::string("\x93NUMPY\x01\x00\xff\x00{}", 12), {"truncated", "header length 255"});
  expect_parse_error<IoError>(std::string("\x93NUMPY\x02\x00\x01\x00", 10), {"truncated"});
  expect_parse_error<IoError>(npy(dict("<f4", "(3,)"), f4), {"truncated", "needs 12", "8 follow"});
  expect_parse_error<IoError>(npy(dict("<f4", "(1,)"), f4), {"trailing bytes", "needs 4"});
  expect_parse_error<IoError>(npy("{'descr': '<f4', 'shape': (2,)}", f4), {"lacks 'fortran_order'"});
  expect_parse_error<IoError>(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", f4),
                              {"unexpected key 'x'"});
  expect_parse_error<IoError>(npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", f4),
                              {"'descr' appears twice"});
  expect_parse_error<IoError>(npy("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", f4), {"True or False"});
  expect_parse_error<IoError>(npy(dict("<f4", "(-2,)"), f4), {"non-negative integer"});
  expect_parse_error<IoError>(npy(dict("<f4", "(99999999999999999999,)"), f4), {"64 bits"});
  expect_parse_error<IoError>(npy(dict("<f4", "(4611686018427387904, 4)"), f4), {"2^63"});
  expect_parse_error<IoError>(npy(dict("<f4", "(2,)") + " x", f4), {"after the header"});
  expect_parse_error<IoError>(npy("{'descr': '<f4", f4), {"unterminated string"});
  expect_parse_error<IoError>(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2", f4), {"expected ')'"});
  expect_parse_error<IoError>(npy(dict("|b1", "(2,)"), "\x01\x05"), {"byte 5 at element 1"});
  expect_parse_error<IoError>(npy(dict("z!!", "(2,)"), f4), {"not a numpy type string"});
  expect_parse_error<IoError>(npy(dict("|f4", "(2,)"), f4), {"'|'"});
  std::string many_dims = "(";
  for (int i = 0; i < 65; ++i) many_dims += "1, ";
  expect_parse_error<IoError>(npy(dict("<f4", many_dims + ")"), f4), {"more than 64 dimensions"});

  expect_parse_error<NotImplementedError>(npy(dict(">f4", "(2,)"), f4), {"big-endian"});
  for (const char* d : {"<u2", "<i2", "<u4", "<u8", "<c8", "<c16", "<U5", "|S3", "|O", "<M8", "<f16"})
    expect_parse_error<NotImplementedError>(npy(dict(d, "(2,)"), f4), {d, "not supported"});
  expect_parse_error<NotImplementedError>(
      npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", f4), {"structured"});
}

TEST(Npy, EveryTruncationOfAValidFileIsRejected) {
  ScratchDir dir;
  const std::string bytes = npy(dict("<i8", "(2, 3)", true), le_bytes<int64_t>({1, 2, 3, 4, 5, 6}));
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_THROW(io::parse_npy(std::string_view(bytes).substr(0, n), "a.npy"), IoError) << n;
  const std::string path = dir.file("cut.npy");
  test::write_bytes(path, bytes.substr(0, bytes.size() - 1));
  try {
    io::read_npy(path);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}
