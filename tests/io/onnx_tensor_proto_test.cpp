// ONNX TensorProto decoding and encoding: the element-type table, round trips for every dtype,
// typed-field decoding against hand-built protos, a real backend-test file checked against its
// raw bytes, and every rejection rule with its error type.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data/test_util.h"
#include "kiln/io/onnx/tensor_proto.h"

using namespace kiln;
using kiln::test::ScratchDir;
using ::onnx::TensorProto;

namespace {

const char* kReluInput = "/usr/share/libonnx-testdata/data/node/test_relu/test_data_set_0/input_0.pb";

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

// Runs `fn`, expecting an exception of type E whose message contains every one of `parts`.
template <typename E, typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected " << typeid(E).name();
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nwanted: " << p;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type (" << typeid(e).name() << "): " << e.what();
  }
}

TensorProto proto(int32_t type, std::vector<int64_t> dims, const std::string& name = "x") {
  TensorProto p;
  p.set_name(name);
  p.set_data_type(type);
  for (int64_t d : dims) p.add_dims(d);
  return p;
}

}  // namespace

TEST(OnnxTensorProto, ElementTypeTable) {
  // TensorProto.DataType values, from onnx.proto.
  const std::vector<std::pair<DType, int32_t>> rows = {{DType::f32, 1}, {DType::u8, 2},    {DType::i8, 3},
                                                       {DType::i32, 6}, {DType::i64, 7},   {DType::b8, 9},
                                                       {DType::f16, 10}, {DType::f64, 11}, {DType::bf16, 16}};
  for (const auto& [dtype, code] : rows) {
    EXPECT_EQ(io::onnx_elem_type(dtype), code) << dtype_name(dtype);
    EXPECT_EQ(io::dtype_from_onnx(code, "ctx"), dtype) << code;
  }
  EXPECT_EQ(io::onnx_type_name(1), "FLOAT");
  EXPECT_EQ(io::onnx_type_name(16), "BFLOAT16");
  EXPECT_EQ(io::onnx_type_name(-3), "unknown");
  const std::vector<std::pair<int32_t, std::string>> missing = {
      {4, "UINT16"}, {5, "INT16"}, {8, "STRING"}, {12, "UINT32"}, {13, "UINT64"},
      {14, "COMPLEX64"}, {15, "COMPLEX128"}, {17, "FLOAT8E4M3FN"}, {19, "FLOAT8E5M2"}, {22, "INT4"}, {99, "unknown"}};
  for (const auto& [code, name] : missing)
    expect_error<NotImplementedError>([&] { io::dtype_from_onnx(code, "model.onnx: input \"x\""); },
                                      {name, "model.onnx: input \"x\"", "not supported"});
  expect_error<ValueError>([] { io::dtype_from_onnx(0, "ctx"); }, {"UNDEFINED", "ctx"});
  expect_error<ValueError>([] { io::dtype_from_onnx(-1, "ctx"); }, {"not a valid ONNX data type"});
}

TEST(OnnxTensorProto, RoundTripsEveryDtypeThroughFiles) {
  ScratchDir dir;
  std::vector<Tensor> tensors = {
      Tensor::from_vector<float>({0.5f, -0.0f, INFINITY, 3.25f, 7.0f, -8.0f}, {2, 3}),
      Tensor::from_vector<double>({1.0, -2.5, 1e300, 5e-324}, {2, 2}),
      to_dtype_raw(Tensor::from_vector<float>({1.0f, -2.0f, 65504.0f, 0.5f}, {4}), DType::f16),
      to_dtype_raw(Tensor::from_vector<float>({1.0f, -2.0f, 3.0e38f}, {3, 1}), DType::bf16),
      Tensor::from_vector<int8_t>({-128, 0, 127}, {3}),
      Tensor::from_vector<uint8_t>({0, 255, 7, 9}, {1, 2, 2}),
      Tensor::from_vector<int32_t>({INT32_MIN, -1, INT32_MAX}, {3}),
      Tensor::from_vector<int64_t>({INT64_MIN, 0, INT64_MAX, 42}, {2, 1, 2}),
      Tensor::from_vector<bool>({true, false, false, true, true}, {5}),
      Tensor::scalar(2.5, DType::f32),          // 0-d
      Tensor::zeros({2, 0, 3}, DType::i64),     // empty
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    SCOPED_TRACE(t.str());
    const std::string path = dir.file("t" + std::to_string(i) + ".pb");
    io::write_tensor_pb(path, t, "w" + std::to_string(i));
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(::getpid())));
    Tensor back = io::read_tensor_pb(path);
    EXPECT_EQ(back.dtype(), t.dtype());
    EXPECT_EQ(back.shape(), t.shape());
    EXPECT_EQ(raw(back), raw(t));
    // The file holds the fields ONNX readers expect: dims, data_type and little-endian raw_data.
    TensorProto p;
    ASSERT_TRUE(p.ParseFromString(test::read_bytes(path)));
    EXPECT_EQ(p.name(), "w" + std::to_string(i));
    EXPECT_EQ(std::vector<int64_t>(p.dims().begin(), p.dims().end()), t.shape());
    EXPECT_TRUE(p.has_raw_data());
    EXPECT_EQ(p.raw_data(), raw(t));
  }
}

TEST(OnnxTensorProto, EncodesLittleEndianRawDataOfNonContiguousTensors) {
  // A transposed view is written in row-major order of its own shape.
  Tensor base = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor t = base.as_strided({3, 2}, {1, 3}, 0);  // t[i][j] = base[j][i]
  TensorProto p = io::tensor_to_proto(t, "tr");
  EXPECT_EQ(p.data_type(), 1);
  EXPECT_EQ(p.raw_data(), le_bytes<float>({1, 4, 2, 5, 3, 6}));
  // 1.0f is 0x3f800000: bytes 00 00 80 3f in little-endian order.
  EXPECT_EQ(p.raw_data().substr(0, 4), std::string("\x00\x00\x80\x3f", 4));
}

TEST(OnnxTensorProto, DecodesTypedFields) {
  {
    TensorProto p = proto(1, {2, 2});
    for (float v : {1.5f, -2.0f, 0.25f, 8.0f}) p.add_float_data(v);
    Tensor t = io::tensor_from_proto(p, "ctx");
    EXPECT_EQ(t.dtype(), DType::f32);
    EXPECT_EQ(t.shape(), (Shape{2, 2}));
    EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1.5f, -2.0f, 0.25f, 8.0f}));
  }
  {
    TensorProto p = proto(11, {3});
    for (double v : {1e-300, -2.0, 3.5}) p.add_double_data(v);
    EXPECT_EQ(io::tensor_from_proto(p, "").to_vector<double>(), (std::vector<double>{1e-300, -2.0, 3.5}));
  }
  {
    TensorProto p = proto(7, {2});
    p.add_int64_data(INT64_MIN);
    p.add_int64_data(1234567890123LL);
    Tensor t = io::tensor_from_proto(p, "");
    EXPECT_EQ(t.dtype(), DType::i64);
    EXPECT_EQ(t.data<int64_t>()[0], INT64_MIN);
    EXPECT_EQ(t.data<int64_t>()[1], 1234567890123LL);
  }
  {
    TensorProto p = proto(6, {3});
    for (int32_t v : {INT32_MIN, 0, 77}) p.add_int32_data(v);
    EXPECT_EQ(io::tensor_from_proto(p, "").to_vector<int64_t>(), (std::vector<int64_t>{INT32_MIN, 0, 77}));
  }
  {  // int8, uint8 and bool ride in int32_data, one value per int32
    TensorProto p = proto(3, {3});
    for (int32_t v : {-128, -1, 127}) p.add_int32_data(v);
    Tensor t = io::tensor_from_proto(p, "");
    EXPECT_EQ(t.dtype(), DType::i8);
    EXPECT_EQ(t.to_vector<int64_t>(), (std::vector<int64_t>{-128, -1, 127}));
    TensorProto q = proto(2, {2});
    for (int32_t v : {0, 255}) q.add_int32_data(v);
    EXPECT_EQ(io::tensor_from_proto(q, "").to_vector<int64_t>(), (std::vector<int64_t>{0, 255}));
    TensorProto b = proto(9, {3});
    for (int32_t v : {1, 0, 1}) b.add_int32_data(v);
    Tensor tb = io::tensor_from_proto(b, "");
    EXPECT_EQ(tb.dtype(), DType::b8);
    EXPECT_EQ(raw(tb), std::string("\x01\x00\x01", 3));
  }
  {  // float16 and bfloat16 as bit patterns: 0x3c00 = 1.0, 0xc000 = -2.0 (also sign-extended), bf16 0x3f80 = 1.0
    TensorProto p = proto(10, {3});
    for (int32_t v : {0x3c00, 0xc000, -16384}) p.add_int32_data(v);
    Tensor t = io::tensor_from_proto(p, "");
    EXPECT_EQ(t.dtype(), DType::f16);
    EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1.0f, -2.0f, -2.0f}));
    TensorProto q = proto(16, {2});
    for (int32_t v : {0x3f80, 0xc0a0}) q.add_int32_data(v);  // 1.0, -5.0
    EXPECT_EQ(io::tensor_from_proto(q, "").to_vector<float>(), (std::vector<float>{1.0f, -5.0f}));
  }
}

TEST(OnnxTensorProto, ScalarsAndEmptyTensors) {
  TensorProto s = proto(1, {});
  s.add_float_data(2.5f);
  Tensor t = io::tensor_from_proto(s, "");
  EXPECT_EQ(t.dim(), 0);
  EXPECT_EQ(t.item(), 2.5);
  TensorProto r = proto(7, {});
  r.set_raw_data(le_bytes<int64_t>({-9}));
  EXPECT_EQ(io::tensor_from_proto(r, "").item(), -9.0);

  TensorProto e = proto(1, {2, 0, 3});  // no data at all
  Tensor te = io::tensor_from_proto(e, "");
  EXPECT_EQ(te.shape(), (Shape{2, 0, 3}));
  EXPECT_EQ(te.numel(), 0);
  e.set_raw_data("");
  EXPECT_EQ(io::tensor_from_proto(e, "").shape(), (Shape{2, 0, 3}));
  // A zero dim makes huge other dims harmless for memory, but their product must still fit strides.
  TensorProto z = proto(1, {0, int64_t{1} << 40});
  EXPECT_EQ(io::tensor_from_proto(z, "").numel(), 0);
}

TEST(OnnxTensorProto, ReadsARealBackendTestFile) {
  // test_relu's input: np.random.randn(3, 4, 5) as float32, stored as raw_data.
  const std::string bytes = test::read_bytes(kReluInput);
  ASSERT_EQ(bytes.size(), 254u);
  Tensor t = io::read_tensor_pb(kReluInput);
  EXPECT_EQ(t.dtype(), DType::f32);
  EXPECT_EQ(t.shape(), (Shape{3, 4, 5}));
  // Independent decode: the wire bytes are dims 3 4 5 (08 03 08 04 08 05), data_type 1 (10 01),
  // name "x" (42 01 78), then raw_data (4a, length 240 as varint f0 01) at offset 14.
  ASSERT_EQ(bytes.substr(0, 14), std::string("\x08\x03\x08\x04\x08\x05\x10\x01\x42\x01\x78\x4a\xf0\x01", 14));
  std::vector<float> expected(60);
  std::memcpy(expected.data(), bytes.data() + 14, 240);
  EXPECT_EQ(t.to_vector<float>(), expected);
  // numpy's randn with seed 0 begins 1.7640524, 0.4001572, 0.9787380, 2.2408931.
  const std::vector<float> v = t.to_vector<float>();
  EXPECT_NEAR(v[0], 1.7640524f, 1e-6);
  EXPECT_NEAR(v[1], 0.4001572f, 1e-6);
  EXPECT_NEAR(v[2], 0.9787380f, 1e-6);
  EXPECT_NEAR(v[3], 2.2408931f, 1e-6);
}

TEST(OnnxTensorProto, RejectsBadData) {
  auto decode = [](const TensorProto& p) { return [p] { io::tensor_from_proto(p, "m.onnx: initializer"); }; };
  TensorProto count = proto(1, {2, 3}, "w");
  for (int i = 0; i < 5; ++i) count.add_float_data(1.0f);
  expect_error<ValueError>(decode(count), {"m.onnx: initializer: tensor \"w\"", "float_data holds 5", "[2, 3]", "6"});

  TensorProto rawsize = proto(11, {4}, "d");
  rawsize.set_raw_data(std::string(31, '\0'));
  expect_error<ValueError>(decode(rawsize), {"tensor \"d\"", "raw_data holds 31 bytes", "DOUBLE", "needs 32"});

  expect_error<ValueError>(decode(proto(1, {2, -1}, "n")), {"tensor \"n\"", "dims[1] = -1", "negative"});
  expect_error<ValueError>(decode(proto(1, {int64_t{1} << 62, 4}, "big")), {"tensor \"big\"", "2^63"});
  TensorProto huge = proto(11, {int64_t{1} << 61, 2});  // numel fits int64, bytes do not fit the raw_data
  huge.set_raw_data("abcd");
  expect_error<ValueError>(decode(huge), {"raw_data holds 4 bytes"});

  TensorProto both = proto(1, {1});
  both.add_float_data(1.0f);
  both.set_raw_data(le_bytes<float>({1.0f}));
  expect_error<ValueError>(decode(both), {"both raw_data and float_data"});

  TensorProto wrong = proto(1, {1});
  wrong.add_int64_data(1);
  expect_error<ValueError>(decode(wrong), {"FLOAT cannot be stored in int64_data"});

  expect_error<ValueError>(decode(proto(6, {2})), {"has no data", "needs 2"});
  expect_error<ValueError>(decode(proto(1, {})), {"has no data", "needs 1"});

  TensorProto i8 = proto(3, {2});
  i8.add_int32_data(5);
  i8.add_int32_data(200);
  expect_error<ValueError>(decode(i8), {"int32_data[1] = 200", "INT8"});
  TensorProto b = proto(9, {1});
  b.add_int32_data(2);
  expect_error<ValueError>(decode(b), {"int32_data[0] = 2", "BOOL"});
  TensorProto braw = proto(9, {2});
  braw.set_raw_data(std::string("\x01\x07", 2));
  expect_error<ValueError>(decode(braw), {"byte 7 at element 1"});

  TensorProto text = proto(8, {1}, "s");
  text.add_string_data("hello");
  expect_error<NotImplementedError>(decode(text), {"tensor \"s\"", "STRING"});

  TensorProto ext = proto(1, {4}, "e");
  ext.set_data_location(TensorProto::EXTERNAL);
  auto* kv = ext.add_external_data();
  kv->set_key("location");
  kv->set_value("weights.bin");
  expect_error<NotImplementedError>(decode(ext), {"tensor \"e\"", "external file", "weights.bin"});

  expect_error<ValueError>(decode(proto(1, std::vector<int64_t>(65, 1))), {"65 dimensions"});
}

TEST(OnnxTensorProto, RejectsCorruptFiles) {
  ScratchDir dir;
  const std::string bytes = test::read_bytes(kReluInput);
  // Cut inside raw_data: the length-delimited field runs past the end, protobuf refuses it.
  const std::string cut = dir.file("cut.pb");
  test::write_bytes(cut, bytes.substr(0, 100));
  expect_error<IoError>([&] { io::read_tensor_pb(cut); }, {cut, "not a valid ONNX TensorProto"});
  // Cut right before raw_data: a valid message whose data is missing.
  expect_error<ValueError>([&] { io::parse_tensor_pb(std::string_view(bytes).substr(0, 11), "head"); },
                           {"head: tensor \"x\"", "has no data"});
  expect_error<IoError>([] { io::parse_tensor_pb("\xff\xff\xff\xff\xff", "junk"); },
                        {"junk: not a valid ONNX TensorProto"});
  expect_error<IoError>([&] { io::read_tensor_pb(dir.file("missing.pb")); }, {"missing.pb"});
  // A file written over an existing one replaces it whole.
  const std::string path = dir.file("w.pb");
  io::write_tensor_pb(path, Tensor::arange(3), "a");
  io::write_tensor_pb(path, Tensor::from_vector<float>({9.0f}), "b");
  EXPECT_EQ(io::read_tensor_pb(path).to_vector<float>(), (std::vector<float>{9.0f}));
}
