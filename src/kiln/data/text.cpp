// Character vocabulary and the windowed next-character dataset.
#include "kiln/data/text.h"

#include "kiln/data/file_read.h"

namespace kiln::data {

namespace {
std::string printable(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
  return detail::concat("byte ", int{u});
}
}  // namespace

CharVocab::CharVocab(std::string chars) : chars_(std::move(chars)) {
  index_.fill(-1);
  for (size_t k = 0; k < chars_.size(); ++k) {
    auto u = static_cast<unsigned char>(chars_[k]);
    KILN_CHECK(index_[u] < 0, "CharVocab: ", printable(chars_[k]), " appears twice");
    index_[u] = static_cast<int16_t>(k);
  }
}

CharVocab CharVocab::from_text(std::string_view text) {
  std::array<bool, 256> seen{};
  for (char c : text) seen[static_cast<unsigned char>(c)] = true;
  std::string chars;
  for (int u = 0; u < 256; ++u)
    if (seen[u]) chars.push_back(static_cast<char>(u));
  return CharVocab(std::move(chars));
}

int64_t CharVocab::id(char c) const {
  int16_t k = index_[static_cast<unsigned char>(c)];
  KILN_CHECK(k >= 0, "CharVocab: ", printable(c), " is not in the vocabulary of ", size(), " characters");
  return k;
}

std::vector<int64_t> CharVocab::encode(std::string_view text) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size());
  for (char c : text) ids.push_back(id(c));
  return ids;
}

std::string CharVocab::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  out.reserve(ids.size());
  for (int64_t k : ids) {
    KILN_CHECK_INDEX(k >= 0 && k < size(), "CharVocab::decode: id ", k, " is outside the vocabulary [0, ", size(), ")");
    out.push_back(chars_[static_cast<size_t>(k)]);
  }
  return out;
}

std::string CharVocab::decode(const Tensor& ids) const {
  KILN_CHECK_TYPE(is_integral(ids.dtype()), "CharVocab::decode: expected integer ids, got ", ids.str());
  return decode(ids.to_vector<int64_t>());
}

CharDataset::CharDataset(std::string_view text, int64_t context, int64_t stride)
    : CharDataset(text, CharVocab::from_text(text), context, stride) {}

CharDataset::CharDataset(std::string_view text, CharVocab vocab, int64_t context, int64_t stride)
    : vocab_(std::move(vocab)), context_(context), stride_(stride == 0 ? context : stride) {
  KILN_CHECK(context >= 1, "CharDataset: context must be >= 1, got ", context);
  KILN_CHECK(stride >= 0, "CharDataset: stride must be >= 0 (0 = context), got ", stride);
  ids_.resize(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids_[i] = static_cast<uint8_t>(vocab_.id(text[i]));
}

std::shared_ptr<CharDataset> CharDataset::from_file(const std::string& path, int64_t context, int64_t stride) {
  std::string text = read_text_file(path);
  if (text.empty()) throw IoError(detail::concat(path, ": empty text file"));
  return std::make_shared<CharDataset>(text, context, stride);
}

int64_t CharDataset::size() const {
  const int64_t n = num_tokens();
  return n < context_ + 1 ? 0 : (n - context_ - 1) / stride_ + 1;
}

Example CharDataset::get(int64_t index) const {
  Batch b = get_batch({index});
  Shape row{context_};
  return {b.input.as_strided(row, {1}, 0), b.target.as_strided(row, {1}, 0)};
}

Batch CharDataset::get_batch(const std::vector<int64_t>& indices) const {
  const int64_t B = static_cast<int64_t>(indices.size()), T = context_;
  Batch b;
  b.input = Tensor::empty({B, T}, DType::i64);   // (B, T)
  b.target = Tensor::empty({B, T}, DType::i64);  // (B, T)
  int64_t* in = b.input.data<int64_t>();
  int64_t* tg = b.target.data<int64_t>();
  const int64_t n = size();
  for (int64_t r = 0; r < B; ++r) {
    const int64_t w = indices[static_cast<size_t>(r)];
    KILN_CHECK_INDEX(w >= 0 && w < n, "CharDataset: window ", w, " out of range for ", n, " windows");
    const uint8_t* src = ids_.data() + w * stride_;
    for (int64_t t = 0; t < T; ++t) {
      in[r * T + t] = src[t];
      tg[r * T + t] = src[t + 1];
    }
  }
  b.indices = indices;
  return b;
}

}  // namespace kiln::data
