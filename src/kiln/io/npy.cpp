// .npy reader and writer. The header is a Python literal; rather than evaluating Python, a small
// parser accepts exactly the dict numpy writes (three keys, any order, either quote style,
// optional trailing comma, Python 2's "3L" integers) and rejects everything else.
#include "kiln/io/npy.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstring>

#include "kiln/io/atomic_file.h"

namespace kiln::io {

static_assert(std::endian::native == std::endian::little, "npy '<' data is read without byte swapping");

namespace {

constexpr std::string_view kMagic = "\x93NUMPY";
constexpr size_t kAlign = 64;                 // numpy.lib.format.ARRAY_ALIGN
constexpr uint32_t kMaxHeaderBytes = 1 << 20;  // numpy itself refuses headers over 10,000 bytes by default
constexpr size_t kMaxDims = 64;                // NPY_MAXDIMS in numpy 2

template <typename... Args>
[[noreturn]] void fail(std::string_view source, Args&&... args) {
  throw IoError(detail::concat(source, ": invalid .npy file: ", std::forward<Args>(args)...));
}

struct Header {
  DType dtype = DType::f32;
  bool fortran_order = false;
  Shape shape;
};

// Maps a descr string to a Kiln dtype. A well-formed descr Kiln lacks is NotImplementedError.
DType dtype_from_descr(std::string_view source, std::string_view descr) {
  std::string_view body = descr;
  char order = '=';
  if (!body.empty() && (body[0] == '<' || body[0] == '>' || body[0] == '|' || body[0] == '=')) {
    order = body[0];
    body.remove_prefix(1);
  }
  struct Row {
    std::string_view code;
    DType dtype;
  };
  static constexpr Row kRows[] = {{"f4", DType::f32}, {"f8", DType::f64}, {"f2", DType::f16}, {"i8", DType::i64},
                                  {"i4", DType::i32}, {"i1", DType::i8},  {"u1", DType::u8},  {"b1", DType::b8},
                                  {"?", DType::b8}};
  for (const Row& r : kRows) {
    if (body != r.code) continue;
    const bool one_byte = element_size(r.dtype) == 1;
    if (order == '>' && !one_byte)
      throw NotImplementedError(detail::concat(source, ": big-endian npy data (descr '", descr,
                                               "') is not supported\nhelp: save it little-endian: "
                                               "np.save(path, a.astype(a.dtype.newbyteorder('<')))"));
    if (order == '|' && !one_byte) fail(source, "descr '", descr, "': '|' (no byte order) on a multi-byte type");
    return r.dtype;
  }
  // Anything shaped like a numpy type string is a type Kiln lacks; anything else is garbage.
  bool type_like = !body.empty() && body.size() <= 4 && std::isalpha(static_cast<unsigned char>(body[0]));
  for (size_t i = 1; i < body.size(); ++i) type_like &= std::isdigit(static_cast<unsigned char>(body[i])) != 0;
  if (!type_like) fail(source, "descr '", descr, "' is not a numpy type string");
  throw NotImplementedError(detail::concat(source, ": npy dtype '", descr,
                                           "' is not supported by Kiln (supported: <f4 <f8 <f2 <i8 <i4 |i1 |u1 |b1)"));
}

// A cursor over the header text with the few Python literal forms numpy writes.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, std::string_view source) : s_(text), source_(source) {}

  Header parse() {
    Header h;
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    skip_ws();
    expect('{');
    for (;;) {
      skip_ws();
      if (eat('}')) break;
      const std::string key = parse_string("a key");
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (seen_descr) fail(source_, "key 'descr' appears twice in the header");
        seen_descr = true;
        if (peek() == '[')
          throw NotImplementedError(detail::concat(source_, ": structured npy dtypes (descr lists) are not supported"));
        h.dtype = dtype_from_descr(source_, parse_string("descr"));
      } else if (key == "fortran_order") {
        if (seen_fortran) fail(source_, "key 'fortran_order' appears twice in the header");
        seen_fortran = true;
        h.fortran_order = parse_bool();
      } else if (key == "shape") {
        if (seen_shape) fail(source_, "key 'shape' appears twice in the header");
        seen_shape = true;
        h.shape = parse_shape();
      } else {
        fail(source_, "unexpected key '", key, "' in the header (expected descr, fortran_order, shape)");
      }
      skip_ws();
      if (eat(',')) continue;
      expect('}');
      break;
    }
    skip_ws();
    if (i_ != s_.size()) fail(source_, "unexpected text after the header dict at byte ", i_);
    if (!seen_descr || !seen_fortran || !seen_shape)
      fail(source_, "header lacks '", !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape", "'");
    return h;
  }

 private:
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  bool eat(char c) {
    if (peek() != c || i_ >= s_.size()) return false;
    ++i_;
    return true;
  }
  void expect(char c) {
    if (!eat(c))
      fail(source_, "header: expected '", c, "' at byte ", i_, i_ < s_.size() ? detail::concat(", found '", s_[i_], "'")
                                                                               : std::string(", found the end"));
  }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }

  std::string parse_string(const char* what) {
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail(source_, "header: expected a quoted string for ", what, " at byte ", i_);
    ++i_;
    const size_t begin = i_;
    while (i_ < s_.size() && s_[i_] != quote && s_[i_] != '\n') {
      if (s_[i_] == '\\') fail(source_, "header: escape sequences in strings are not supported (byte ", i_, ")");
      ++i_;
    }
    if (i_ >= s_.size() || s_[i_] == '\n') fail(source_, "header: unterminated string starting at byte ", begin - 1);
    std::string out(s_.substr(begin, i_ - begin));
    ++i_;
    return out;
  }

  bool parse_bool() {
    for (const bool value : {true, false}) {
      const std::string_view word = value ? "True" : "False";
      if (s_.substr(i_, word.size()) == word) {
        i_ += word.size();
        return value;
      }
    }
    fail(source_, "header: fortran_order must be True or False (at byte ", i_, ")");
  }

  int64_t parse_dim() {
    const size_t begin = i_;
    uint64_t v = 0;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) {
      if (__builtin_mul_overflow(v, uint64_t{10}, &v) || __builtin_add_overflow(v, uint64_t(s_[i_] - '0'), &v) ||
          v > uint64_t{INT64_MAX})
        fail(source_, "header: shape entry at byte ", begin, " does not fit in 64 bits");
      ++i_;
    }
    if (i_ == begin) fail(source_, "header: expected a non-negative integer in shape at byte ", i_);
    eat('L');  // Python 2 longs
    return static_cast<int64_t>(v);
  }

  Shape parse_shape() {
    Shape shape;
    expect('(');
    for (;;) {
      skip_ws();
      if (eat(')')) break;
      if (shape.size() >= kMaxDims) fail(source_, "shape has more than ", kMaxDims, " dimensions");
      shape.push_back(parse_dim());
      skip_ws();
      if (eat(',')) continue;
      expect(')');
      break;
    }
    return shape;
  }

  std::string_view s_;
  std::string_view source_;
  size_t i_ = 0;
};

std::string descr_of(DType t) {
  switch (t) {
    case DType::f32: return "<f4";
    case DType::f64: return "<f8";
    case DType::f16: return "<f2";
    case DType::i64: return "<i8";
    case DType::i32: return "<i4";
    case DType::i8: return "|i1";
    case DType::u8: return "|u1";
    case DType::b8: return "|b1";
    case DType::bf16: break;
  }
  throw NotImplementedError("write_npy: numpy has no bfloat16 dtype\nhelp: convert with .to(DType::f32) first");
}

}  // namespace

Tensor parse_npy(std::string_view bytes, std::string_view source) {
  if (bytes.size() < kMagic.size() + 2 || bytes.substr(0, kMagic.size()) != kMagic)
    fail(source, "does not start with the magic \"\\x93NUMPY\"");
  const int major = static_cast<unsigned char>(bytes[6]), minor = static_cast<unsigned char>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0)
    fail(source, "format version ", major, ".", minor, " is not supported (1.0, 2.0 and 3.0 are)");
  const size_t len_bytes = major == 1 ? 2 : 4;
  const size_t prefix = kMagic.size() + 2 + len_bytes;
  if (bytes.size() < prefix) fail(source, "truncated: ", bytes.size(), " bytes end inside the header length");
  uint32_t header_len = 0;
  for (size_t i = 0; i < len_bytes; ++i) header_len |= uint32_t{static_cast<unsigned char>(bytes[8 + i])} << (8 * i);
  if (header_len > kMaxHeaderBytes) fail(source, "header length ", header_len, " exceeds ", kMaxHeaderBytes, " bytes");
  if (header_len > bytes.size() - prefix)
    fail(source, "truncated: header length ", header_len, " runs past the end of the file (", bytes.size() - prefix,
         " bytes follow)");
  const Header h = HeaderParser(bytes.substr(prefix, header_len), source).parse();

  uint64_t numel = 1, nonzero = 1;
  for (int64_t d : h.shape) {
    numel *= static_cast<uint64_t>(d);
    if (d != 0 && (__builtin_mul_overflow(nonzero, static_cast<uint64_t>(d), &nonzero) || nonzero > uint64_t{INT64_MAX}))
      fail(source, "shape ", shape_str(h.shape), " holds more than 2^63 elements");
  }
  const std::string_view data = bytes.substr(prefix + header_len);
  uint64_t nbytes = 0;
  const bool overflow = __builtin_mul_overflow(numel, uint64_t{element_size(h.dtype)}, &nbytes);
  if (overflow || data.size() != nbytes)
    fail(source, overflow || data.size() < nbytes ? "truncated: " : "trailing bytes: ", "shape ", shape_str(h.shape),
         " of ", dtype_name(h.dtype), " needs ", overflow ? std::string("more than 2^64") : std::to_string(nbytes),
         " data bytes but ", data.size(), " follow the header");
  if (h.dtype == DType::b8)  // any byte but 0 or 1 is not a valid C++ bool
    for (size_t i = 0; i < data.size(); ++i)
      if (static_cast<unsigned char>(data[i]) > 1)
        fail(source, "bool data holds byte ", int{static_cast<unsigned char>(data[i])}, " at element ", i,
             " (must be 0 or 1)");

  if (!h.fortran_order || h.shape.size() < 2) {
    Tensor t = Tensor::empty(h.shape, h.dtype);
    if (nbytes > 0) std::memcpy(t.raw_data(), data.data(), nbytes);
    return t;
  }
  // Fortran order: the first index varies fastest. View the bytes with column-major strides and
  // copy into a row-major tensor.
  Tensor flat = Tensor::empty({static_cast<int64_t>(numel)}, h.dtype);
  if (nbytes > 0) std::memcpy(flat.raw_data(), data.data(), nbytes);
  Strides strides(h.shape.size());
  int64_t s = 1;
  for (size_t i = 0; i < h.shape.size(); ++i) {
    strides[i] = s;
    s *= std::max<int64_t>(h.shape[i], 1);  // bounded by the non-zero product checked above
  }
  return clone_raw(flat.as_strided(h.shape, strides, 0));
}

Tensor read_npy(const std::string& path) { return parse_npy(read_file(path), path); }

std::string encode_npy(const Tensor& t) {
  KILN_CHECK(t.defined(), "write_npy: undefined tensor");
  KILN_CHECK(t.device() == Device::cpu(), "write_npy: tensor is not on the CPU");
  const Tensor c = contiguous_raw(t);
  std::string shape = "(";
  for (size_t i = 0; i < c.shape().size(); ++i)
    shape += (i > 0 ? ", " : "") + std::to_string(c.shape()[i]);
  shape += c.shape().size() == 1 ? ",)" : ")";
  std::string header = "{'descr': '" + descr_of(c.dtype()) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // As numpy's _wrap_header: pad with spaces and a final newline so the data starts on a 64-byte
  // boundary (a full 64 spaces when it already would). Version 2.0 only for headers over 64 KiB.
  const bool v2 = header.size() + kAlign + 1 > 65535;
  const size_t prefix = kMagic.size() + 2 + (v2 ? 4 : 2);
  header.append(kAlign - (prefix + header.size() + 1) % kAlign, ' ');
  header += '\n';
  std::string out(kMagic);
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  const uint32_t len = static_cast<uint32_t>(header.size());
  for (size_t i = 0; i < (v2 ? 4u : 2u); ++i) out += static_cast<char>((len >> (8 * i)) & 0xff);
  out += header;
  const size_t nbytes = static_cast<size_t>(c.numel()) * element_size(c.dtype());
  if (nbytes > 0) out.append(static_cast<const char*>(c.raw_data()), nbytes);
  return out;
}

void write_npy(const std::string& path, const Tensor& t) { write_file_atomic(path, encode_npy(t)); }

}  // namespace kiln::io
