// safetensors: round trips for every dtype, byte-exact agreement with the reference
// implementation's test vectors, every rejection rule, and a mutation fuzz test.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <typeinfo>

#include <gtest/gtest.h>

#include "data/test_util.h"
#include "kiln/io/safetensors.h"

using namespace kiln;
using kiln::test::ScratchDir;

namespace {

std::string u64le(uint64_t n) {
  std::string s(8, '\0');
  std::memcpy(s.data(), &n, 8);
  return s;
}

// A file made of a header length, header text and data bytes, all given verbatim.
std::string file_bytes(const std::string& header, const std::string& data, int64_t declared_len = -1) {
  return u64le(declared_len < 0 ? header.size() : static_cast<uint64_t>(declared_len)) + header + data;
}

std::string bytes_of(std::initializer_list<int> v) {
  std::string s;
  for (int b : v) s.push_back(static_cast<char>(b));
  return s;
}

// The loaded tensor's raw bytes, for exact comparisons across dtypes.
std::string raw(const Tensor& t) {
  Tensor c = contiguous_raw(t);
  return std::string(static_cast<const char*>(c.raw_data()), static_cast<size_t>(c.numel()) * element_size(c.dtype()));
}

void expect_load_error(const std::string& path, const std::string& what) {
  try {
    io::load_safetensors(path);
    FAIL() << "expected an IoError containing: " << what;
  } catch (const IoError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "message: " << msg << "\nwanted: " << what;
  }
}

}  // namespace

TEST(Safetensors, RoundTripsEveryDtype) {
  ScratchDir dir;
  io::TensorMap in;
  in["f64"] = Tensor::from_vector<double>({1.0, -2.5, 1e300, std::nan("")}, {2, 2});
  in["f32"] = Tensor::from_vector<float>({0.5f, -0.0f, INFINITY, 3.25f, 7.0f, 8.0f}, {3, 2});
  in["f16"] = to_dtype_raw(Tensor::from_vector<float>({1.0f, -2.0f, 65504.0f}, {3}), DType::f16);
  in["bf16"] = to_dtype_raw(Tensor::from_vector<float>({1.0f, -3.0f, 1e30f}, {3}), DType::bf16);
  in["i64"] = Tensor::from_vector<int64_t>({INT64_MIN, -1, INT64_MAX}, {3});
  in["i32"] = Tensor::from_vector<int32_t>({-7, 0, 2147483647}, {1, 3});
  in["i8"] = Tensor::from_vector<int8_t>({-128, 0, 127}, {3});
  in["u8"] = Tensor::from_vector<uint8_t>({0, 1, 255}, {3});
  in["bool"] = Tensor::from_vector<bool>({true, false, true, true}, {2, 2});
  in["scalar"] = Tensor::scalar(4.5);
  in["empty"] = Tensor::zeros({0, 3});
  // A non-contiguous view: the transpose of a 2x3 matrix, written as its contiguous 3x2 copy.
  Tensor base = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  in["transposed"] = base.as_strided({3, 2}, {1, 3}, 0);
  io::Metadata meta = {{"format", "pt"}, {"note", "quotes \" and \\ and \xc3\xa9"}};
  io::save_safetensors(dir.file("all.safetensors"), in, meta);
  auto out = io::load_safetensors(dir.file("all.safetensors"));
  EXPECT_EQ(out.metadata, meta);
  ASSERT_EQ(out.tensors.size(), in.size());
  for (const auto& [name, t] : in) {
    SCOPED_TRACE(name);
    const Tensor& u = out.tensors.at(name);
    EXPECT_EQ(u.dtype(), t.dtype());
    EXPECT_EQ(u.shape(), t.shape());
    EXPECT_TRUE(u.is_contiguous());
    EXPECT_EQ(raw(u), raw(t));
  }
  EXPECT_EQ(out.tensors.at("transposed").to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  // Loaded tensors own their memory: they survive the file and do not alias the inputs.
  std::filesystem::remove(dir.file("all.safetensors"));
  in["f32"].data<float>()[0] = 99;
  EXPECT_EQ(out.tensors.at("f32").to_vector<float>()[0], 0.5f);
}

TEST(Safetensors, FileLayoutFollowsTheFormat) {
  ScratchDir dir;
  io::TensorMap in = {{"b", Tensor::from_vector<int8_t>({1, 2, 3})}, {"a", Tensor::from_vector<double>({1.0})}};
  io::save_safetensors(dir.file("x.safetensors"), in, {{"k", "v"}});
  std::string f = test::read_bytes(dir.file("x.safetensors"));
  uint64_t n;
  std::memcpy(&n, f.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  std::string header = f.substr(8, n);
  // Metadata first, tensors by name, padding with spaces; data: the f64 first (alignment), then the i8.
  EXPECT_EQ(header.substr(0, header.find_last_not_of(' ') + 1),
            "{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[8,11]}}");
  EXPECT_EQ(f.substr(8 + n), bytes_of({0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 1, 2, 3}));
}

// Byte-for-byte test vectors from the reference implementation's tests (safetensors/src/tensor.rs).
TEST(Safetensors, MatchesReferenceSerialization) {
  ScratchDir dir;
  Tensor data = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5});
  const std::string f32_data = bytes_of({0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64});
  io::save_safetensors(dir.file("a.safetensors"), {{"attn.0", data.as_strided({1, 2, 3}, {6, 3, 1}, 0)}});
  EXPECT_EQ(test::read_bytes(dir.file("a.safetensors")),
            u64le(64) + "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}" + f32_data);
  io::save_safetensors(dir.file("b.safetensors"), {{"attn0", data.as_strided({1, 1, 2, 3}, {6, 6, 3, 1}, 0)}});
  EXPECT_EQ(test::read_bytes(dir.file("b.safetensors")),
            u64le(72) + "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       " + f32_data);
  io::save_safetensors(dir.file("c.safetensors"), {});
  EXPECT_EQ(test::read_bytes(dir.file("c.safetensors")), u64le(8) + "{}      ");
  io::save_safetensors(dir.file("d.safetensors"), {}, {{"framework", "pt"}});
  EXPECT_EQ(test::read_bytes(dir.file("d.safetensors")), u64le(40) + "{\"__metadata__\":{\"framework\":\"pt\"}}     ");
  for (const char* name : {"a.safetensors", "b.safetensors", "c.safetensors", "d.safetensors"})
    EXPECT_NO_THROW(io::load_safetensors(dir.file(name))) << name;
}

TEST(Safetensors, ReadsHandBuiltFiles) {
  ScratchDir dir;
  // The format's own example (reference test_deserialization): 60-byte header, unpadded.
  test::write_bytes(dir.file("spec.safetensors"),
                    file_bytes("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
                               std::string(16, '\0')));
  auto c = io::load_safetensors(dir.file("spec.safetensors"));
  ASSERT_EQ(c.tensors.size(), 1u);
  EXPECT_EQ(c.tensors.at("test").dtype(), DType::i32);
  EXPECT_EQ(c.tensors.at("test").shape(), (Shape{2, 2}));
  EXPECT_EQ(c.tensors.at("test").to_vector<int32_t>(), std::vector<int32_t>(4, 0));
  EXPECT_TRUE(c.metadata.empty());
  // Scalar (empty shape), zero-size tensor, whitespace-padded header, tensors listed out of offset order.
  test::write_bytes(dir.file("scalar.safetensors"),
                    file_bytes("{\"test\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]}}", bytes_of({7, 0, 0, 0})));
  EXPECT_EQ(io::load_safetensors(dir.file("scalar.safetensors")).tensors.at("test").item(), 7);
  test::write_bytes(dir.file("zero.safetensors"),
                    file_bytes("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,0],\"data_offsets\":[0, 0]}}", ""));
  EXPECT_EQ(io::load_safetensors(dir.file("zero.safetensors")).tensors.at("test").shape(), (Shape{2, 0}));
  test::write_bytes(dir.file("ws.safetensors"), file_bytes("{}\r \t\n", ""));
  EXPECT_TRUE(io::load_safetensors(dir.file("ws.safetensors")).tensors.empty());
  test::write_bytes(dir.file("order.safetensors"),
                    file_bytes("{\"z\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                               "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]},"
                               "\"__metadata__\":{\"x\":\"y\"}}",
                               bytes_of({9, 8, 7})));
  auto o = io::load_safetensors(dir.file("order.safetensors"));
  EXPECT_EQ(o.tensors.at("z").to_vector<int>(), (std::vector<int>{9}));
  EXPECT_EQ(o.tensors.at("a").to_vector<int>(), (std::vector<int>{8, 7}));
  EXPECT_EQ(o.metadata.at("x"), "y");
}

TEST(Safetensors, RejectsEveryViolation) {
  ScratchDir dir;
  const std::string ok_entry = "\"t\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}";
  const std::string data16(16, '\0');
  struct Case {
    std::string name, bytes, what;
  };
  std::vector<Case> cases = {
      {"empty", "", "too small for the 8-byte header length"},
      {"short", "\x01\x02\x03", "too small"},
      {"len_past_end", u64le(60), "runs past the end of the file"},
      {"len_past_end2", file_bytes("{" + ok_entry + "}", data16, 200), "runs past the end"},
      {"header_too_big", file_bytes("{}", "", 100'000'001), "exceeds the 100000000-byte limit"},
      {"header_huge", u64le(0xffffffff00000000ull) + "{}", "exceeds"},
      {"not_json", file_bytes("{", ""), "not valid JSON"},
      {"not_json2", file_bytes("{\"t\":{\"dtype\":}", ""), "not valid JSON"},
      {"non_utf8", file_bytes("\xff", ""), "starting with '{'"},
      {"bad_utf8_key", file_bytes("{\"\xff\":1}", ""), "not valid JSON"},
      {"array_header", file_bytes("[1,2]", ""), "starting with '{'"},
      {"entry_not_object", file_bytes("{\"t\":5}", ""), "entry must be an object"},
      {"unknown_dtype", file_bytes("{\"t\":{\"dtype\":\"C64\",\"shape\":[2],\"data_offsets\":[0,16]}}", data16),
       "unknown dtype \"C64\""},
      {"fp8_dtype", file_bytes("{\"t\":{\"dtype\":\"F8_E4M3\",\"shape\":[16],\"data_offsets\":[0,16]}}", data16),
       "unknown dtype"},
      {"dtype_number", file_bytes("{\"t\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", std::string(8, '\0')),
       "dtype must be a string"},
      {"missing_shape", file_bytes("{\"t\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", "a"), "missing \"shape\""},
      {"missing_offsets", file_bytes("{\"t\":{\"dtype\":\"U8\",\"shape\":[1]}}", "a"), "missing \"data_offsets\""},
      {"negative_dim", file_bytes("{\"t\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", "a"),
       "must be a non-negative integer"},
      {"float_dim", file_bytes("{\"t\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", "a"),
       "must be a non-negative integer"},
      {"shape_not_array", file_bytes("{\"t\":{\"dtype\":\"U8\",\"shape\":1,\"data_offsets\":[0,1]}}", "a"),
       "shape must be an array"},
      {"offsets_three", file_bytes("{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", "a"),
       "array of two integers"},
      {"offsets_backwards", file_bytes("{\"t\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[1,0]}}", "a"),
       "end before they begin"},
      {"size_mismatch", file_bytes("{\"t\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0, 4]}}", "abcd"),
       "needs 16 bytes but data_offsets [0, 4] span 4"},
      {"overflow_shape",
       file_bytes("{\"t\":{\"dtype\":\"I32\",\"shape\":[2,18446744073709551614],\"data_offsets\":[0,16]}}", data16),
       "more than 2^63 elements"},
      {"overflow_bytes",
       file_bytes("{\"t\":{\"dtype\":\"I32\",\"shape\":[2,4611686018427387903],\"data_offsets\":[0,16]}}", data16),
       "more than 2^64"},
      {"overlap",
       file_bytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
                  "abcdef"),
       "overlap the previous tensor"},
      {"same_offsets",  // the reference's "JSON attack": many tensors sharing one byte range
       file_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
                  data16),
       "overlap"},
      {"gap",
       file_bytes("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}",
                  "abcde"),
       "leave a gap"},
      {"not_from_zero", file_bytes("{\"t\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", "abc"),
       "leave a gap: bytes [0, 1) belong to no tensor"},
      {"out_of_bounds", file_bytes("{\"t\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", "abc"),
       "run past the 3-byte data buffer"},
      {"missing_two_bytes", file_bytes("{" + ok_entry + "}", std::string(14, '\0')), "run past the 14-byte"},
      {"trailing", file_bytes("{" + ok_entry + "}", data16 + "extra_bogus_data_for_polyglot_file"),
       "34 trailing bytes"},
      {"trailing_no_tensors", file_bytes("{}", "x"), "1 trailing bytes"},
      {"duplicate_key", file_bytes("{" + ok_entry + "," + ok_entry + "}", data16), "\"t\" appears twice"},
      {"duplicate_inner",
       file_bytes("{\"t\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", "a"),
       "\"dtype\" appears twice"},
      {"metadata_not_object", file_bytes("{\"__metadata__\":[1]}", ""), "must be an object of strings"},
      {"metadata_number", file_bytes("{\"__metadata__\":{\"epoch\":3}}", ""), "value of \"epoch\" must be a string"},
      {"metadata_nested", file_bytes("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", ""), "must be a string"},
      {"bool_byte", file_bytes("{\"t\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}", bytes_of({0, 1, 2})),
       "holds byte 2 at element 2"},
      {"deep", file_bytes("{\"a\":" + std::string(5000, '[') + std::string(5000, ']') + "}", ""), "nested deeper"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir.file(c.name + ".safetensors");
    test::write_bytes(path, c.bytes);
    expect_load_error(path, c.what);
  }
  expect_load_error(dir.file("missing.safetensors"), "cannot open");
  EXPECT_THROW(io::save_safetensors(dir.file("bad.safetensors"), {{"__metadata__", Tensor::ones({1})}}), ValueError);
  EXPECT_THROW(io::save_safetensors(dir.file("bad.safetensors"), {{"u", Tensor()}}), ValueError);
}

// Random damage to a valid file must give data or kiln::Error: never a crash, hang or other exception.
TEST(Safetensors, MutationFuzz) {
  ScratchDir dir;
  io::TensorMap in = {{"w", Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3})},
                      {"b", Tensor::from_vector<int64_t>({7, 8})},
                      {"m", Tensor::from_vector<bool>({true, false, true})},
                      {"h", to_dtype_raw(Tensor::from_vector<float>({0.5f, 1.5f}), DType::bf16)}};
  const std::string path = dir.file("seed.safetensors");
  io::save_safetensors(path, in, {{"step", "12"}});
  const std::string valid = test::read_bytes(path);
  // KILN_FUZZ_ITERS / KILN_FUZZ_SEED run longer or different campaigns (e.g. under ASan).
  const char* iters_env = std::getenv("KILN_FUZZ_ITERS");
  const char* seed_env = std::getenv("KILN_FUZZ_SEED");
  const int iters = iters_env ? std::atoi(iters_env) : 3000;
  std::mt19937_64 rng(seed_env ? std::strtoull(seed_env, nullptr, 10) : 20240531);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % std::max<size_t>(n, 1)); };
  const std::string interesting[] = {"\"", "{", "}", "[", "]", ",", ":", "0", "9", "-", "1e9", "\\u0000", "\xff",
                                     "18446744073709551615", "\"dtype\"", "\"BOOL\"", "\"__metadata__\""};
  int loaded = 0, rejected = 0;
  const std::string fuzz = dir.file("fuzz.safetensors");
  for (int iter = 0; iter < iters; ++iter) {
    std::string m = valid;
    const int edits = 1 + static_cast<int>(pick(4));
    for (int k = 0; k < edits; ++k) {
      switch (pick(6)) {
        case 0: m[pick(m.size())] ^= static_cast<char>(1 << pick(8)); break;            // bit flip
        case 1: m[pick(m.size())] = static_cast<char>(rng()); break;                     // byte overwrite
        case 2: m.resize(pick(m.size() + 1)); break;                                      // truncation
        case 3: m.insert(pick(m.size() + 1), std::string(1 + pick(8), static_cast<char>(rng()))); break;
        case 4: m.insert(pick(m.size() + 1), interesting[pick(std::size(interesting))]); break;
        case 5:                                                                            // header length
          if (m.size() >= 8) {
            uint64_t n = pick(3) == 0 ? rng() : valid.size() - 8 - pick(32);
            std::memcpy(m.data(), &n, 8);
          }
          break;
      }
      if (m.empty()) break;
    }
    // Through the file API now and then; in memory otherwise (rewriting a file 3000 times is slow).
    if (iter % 100 == 0) test::write_bytes(fuzz, m);
    try {
      auto c = iter % 100 == 0 ? io::load_safetensors(fuzz) : io::parse_safetensors(m, "fuzz");
      for (const auto& [name, t] : c.tensors) (void)raw(t);  // touch every byte
      ++loaded;
    } catch (const kiln::Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "iteration " << iter << ": non-kiln exception " << typeid(e).name() << ": " << e.what();
    }
  }
  EXPECT_GT(rejected, iters / 3);
  EXPECT_GT(loaded, iters / 300);  // flips inside tensor data or metadata strings still load
}
