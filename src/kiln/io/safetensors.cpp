// safetensors reader and writer. The reader trusts nothing: the header length, the JSON, every
// field of every entry and the byte ranges are checked before any tensor is built, following the
// rules of the reference implementation (huggingface/safetensors, Metadata::validate).
#include "kiln/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "kiln/io/atomic_file.h"

namespace kiln::io {

static_assert(std::endian::native == std::endian::little, "safetensors stores little-endian data");

namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // as the reference implementation
constexpr size_t kMaxDims = 64;
constexpr int kMaxJsonDepth = 8;                   // a valid header is 3 levels deep
constexpr const char* kMetadataKey = "__metadata__";

template <typename... Args>
[[noreturn]] void fail(const std::string& path, Args&&... args) {
  throw IoError(detail::concat(path, ": invalid safetensors file: ", std::forward<Args>(args)...));
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

// Parses the header, rejecting duplicate keys (nlohmann keeps the last one silently) and deep nesting.
json parse_header(const std::string& path, std::string_view text) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string duplicate;
  bool too_deep = false;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxJsonDepth) too_deep = true;
    switch (event) {
      case json::parse_event_t::object_start: keys.emplace_back(); break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty())
          duplicate = parsed.get<std::string>();
        break;
      default: break;
    }
    return !too_deep;  // stop building the value tree once too deep
  };
  json header;
  try {
    header = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    fail(path, "header is not valid JSON (", e.what(), ")");
  }
  if (too_deep) fail(path, "header JSON is nested deeper than ", kMaxJsonDepth, " levels");
  if (!duplicate.empty()) fail(path, "key \"", duplicate, "\" appears twice in the header");
  return header;
}

uint64_t as_u64(const std::string& path, const json& v, const std::string& what) {
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
    fail(path, what, " must be a non-negative integer, got ", v.dump());
  return v.get<uint64_t>();
}

Entry parse_entry(const std::string& path, const std::string& name, const json& v) {
  const std::string where = "tensor \"" + name + "\"";
  if (!v.is_object()) fail(path, where, ": entry must be an object, got ", v.type_name());
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!v.contains(field)) fail(path, where, ": missing \"", field, "\"");
  Entry e;
  e.name = name;
  const json& dt = v["dtype"];
  if (!dt.is_string()) fail(path, where, ": dtype must be a string");
  try {
    e.dtype = dtype_from_safetensors(dt.get<std::string>());
  } catch (const Error&) {
    fail(path, where, ": unknown dtype \"", dt.get<std::string>(), "\" (supported: F64 F32 F16 BF16 I64 I32 I8 U8 BOOL)");
  }
  const json& shape = v["shape"];
  if (!shape.is_array()) fail(path, where, ": shape must be an array");
  if (shape.size() > kMaxDims) fail(path, where, ": shape has ", shape.size(), " dimensions (at most ", kMaxDims, ")");
  // numel, and the product of the non-zero dims, which bounds every stride: both must fit int64.
  uint64_t numel = 1, nonzero = 1;
  bool overflow = false;
  for (const json& d : shape) {
    uint64_t n = as_u64(path, d, where + " shape entry");
    e.shape.push_back(static_cast<int64_t>(n));
    numel *= n;
    if (n != 0) overflow |= __builtin_mul_overflow(nonzero, n, &nonzero) || nonzero > uint64_t{INT64_MAX};
  }
  if (overflow) fail(path, where, ": shape ", shape.dump(), " has more than 2^63 elements");
  const json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2) fail(path, where, ": data_offsets must be an array of two integers");
  e.begin = as_u64(path, off[0], where + " data_offsets[0]");
  e.end = as_u64(path, off[1], where + " data_offsets[1]");
  if (e.end < e.begin) fail(path, where, ": data_offsets [", e.begin, ", ", e.end, "] end before they begin");
  uint64_t nbytes = 0;
  overflow |= __builtin_mul_overflow(numel, element_size(e.dtype), &nbytes);
  if (overflow || nbytes != e.end - e.begin)
    fail(path, where, ": shape ", shape_str(e.shape), " of ", safetensors_name(e.dtype), " needs ",
         overflow ? std::string("more than 2^64") : std::to_string(nbytes), " bytes but data_offsets [", e.begin,
         ", ", e.end, "] span ", e.end - e.begin);
  return e;
}

Metadata parse_metadata(const std::string& path, const json& v) {
  if (!v.is_object()) fail(path, "\"__metadata__\" must be an object of strings");
  Metadata m;
  for (const auto& [k, val] : v.items()) {
    if (!val.is_string()) fail(path, "\"__metadata__\" value of \"", k, "\" must be a string, got ", val.type_name());
    m[k] = val.get<std::string>();
  }
  return m;
}

}  // namespace

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  // Data layout as the reference writer: larger elements first, then by name, so that every
  // tensor starts aligned to its element size (the header is padded to 8 bytes).
  std::vector<std::pair<std::string, Tensor>> layout;
  for (const auto& [name, t] : tensors) {
    KILN_CHECK(name != kMetadataKey, "save_safetensors: \"", kMetadataKey, "\" cannot name a tensor");
    KILN_CHECK(t.defined(), "save_safetensors: tensor \"", name, "\" is undefined");
    KILN_CHECK(t.device() == Device::cpu(), "save_safetensors: tensor \"", name, "\" is not on the CPU");
    layout.emplace_back(name, contiguous_raw(t));
  }
  std::stable_sort(layout.begin(), layout.end(), [](const auto& a, const auto& b) {
    return element_size(a.second.dtype()) > element_size(b.second.dtype());
  });
  std::map<std::string, std::pair<uint64_t, uint64_t>> offsets;
  uint64_t offset = 0;
  for (const auto& [name, c] : layout) {
    const uint64_t nbytes = static_cast<uint64_t>(c.numel()) * element_size(c.dtype());
    offsets[name] = {offset, offset + nbytes};
    offset += nbytes;
  }
  // The header: "__metadata__" first, then the tensors by name, each entry's fields in the
  // reference order (dtype, shape, data_offsets); a one-tensor file is byte-identical to the
  // reference implementation's.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header[kMetadataKey] = std::move(m);
  }
  for (const auto& [name, t] : tensors) {
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = std::string(safetensors_name(t.dtype()));
    entry["shape"] = t.shape();
    entry["data_offsets"] = {offsets[name].first, offsets[name].second};
    header[name] = std::move(entry);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // so the data starts 8-byte aligned
  write_file_atomic(path, [&](std::ostream& os) {
    const uint64_t n = text.size();
    char len[8];
    std::memcpy(len, &n, 8);
    os.write(len, 8);
    os.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& [name, c] : layout)
      if (c.numel() > 0)
        os.write(static_cast<const char*>(c.raw_data()), c.numel() * static_cast<std::streamsize>(element_size(c.dtype())));
  });
}

SafetensorsContent load_safetensors(const std::string& path) { return parse_safetensors(read_file(path), path); }

SafetensorsContent parse_safetensors(std::string_view bytes, const std::string& path) {
  if (bytes.size() < 8) fail(path, "file of ", bytes.size(), " bytes is too small for the 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > kMaxHeaderBytes) fail(path, "header length ", n, " exceeds the ", kMaxHeaderBytes, "-byte limit");
  if (n > bytes.size() - 8)
    fail(path, "header length ", n, " runs past the end of the file (", bytes.size() - 8, " bytes follow it)");
  std::string_view text(bytes.data() + 8, n);
  if (text.empty() || text[0] != '{') fail(path, "header must be a JSON object starting with '{'");
  const json header = parse_header(path, text);
  if (!header.is_object()) fail(path, "header must be a JSON object");

  SafetensorsContent out;
  std::vector<Entry> entries;
  for (const auto& [name, v] : header.items()) {
    if (name == kMetadataKey)
      out.metadata = parse_metadata(path, v);
    else
      entries.push_back(parse_entry(path, name, v));
  }

  // The byte ranges must tile the data buffer exactly: sorted by offset, each starts where the
  // previous one ended, the first at 0 and the last at the buffer's end.
  const uint64_t buffer_size = bytes.size() - 8 - n;
  std::vector<const Entry*> order;
  for (const Entry& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t expected = 0;
  for (const Entry* e : order) {
    if (e->begin < expected)
      fail(path, "tensor \"", e->name, "\" data_offsets [", e->begin, ", ", e->end,
           "] overlap the previous tensor, which ends at ", expected);
    if (e->begin > expected)
      fail(path, "tensor \"", e->name, "\" data_offsets [", e->begin, ", ", e->end, "] leave a gap: bytes [",
           expected, ", ", e->begin, ") belong to no tensor (tensors must tile the data buffer)");
    if (e->end > buffer_size)
      fail(path, "tensor \"", e->name, "\" data_offsets [", e->begin, ", ", e->end, "] run past the ", buffer_size,
           "-byte data buffer");
    expected = e->end;
  }
  if (expected != buffer_size)
    fail(path, "the tensors cover ", expected, " of the ", buffer_size, " data bytes (", buffer_size - expected,
         " trailing bytes)");

  const char* data = bytes.data() + 8 + n;
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    const size_t nbytes = static_cast<size_t>(e.end - e.begin);
    if (e.dtype == DType::b8)  // any byte but 0 or 1 is not a valid C++ bool
      for (size_t i = 0; i < nbytes; ++i)
        if (static_cast<unsigned char>(data[e.begin + i]) > 1)
          fail(path, "tensor \"", e.name, "\" of dtype BOOL holds byte ", int{static_cast<unsigned char>(data[e.begin + i])},
               " at element ", i, " (must be 0 or 1)");
    if (nbytes > 0) std::memcpy(t.raw_data(), data + e.begin, nbytes);
    out.tensors.emplace(e.name, std::move(t));
  }
  return out;
}

}  // namespace kiln::io
