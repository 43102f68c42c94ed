// Character-level text for language models: a vocabulary of the corpus's distinct bytes (sorted,
// so ids are stable for a given corpus), the corpus encoded as ids, and (T)-length windows with
// input ids[s : s+T] and target ids[s+1 : s+T+1] (the next character at every position).
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/data/dataset.h"

namespace kiln::data {

class CharVocab {
 public:
  CharVocab() { index_.fill(-1); }
  explicit CharVocab(std::string chars);  // id k is chars[k]; chars must be distinct
  static CharVocab from_text(std::string_view text);  // the sorted distinct bytes of text

  int64_t size() const { return static_cast<int64_t>(chars_.size()); }
  const std::string& chars() const { return chars_; }
  bool contains(char c) const { return index_[static_cast<unsigned char>(c)] >= 0; }
  int64_t id(char c) const;  // throws ValueError for a character outside the vocabulary
  std::vector<int64_t> encode(std::string_view text) const;
  std::string decode(const std::vector<int64_t>& ids) const;  // throws IndexError for a bad id
  std::string decode(const Tensor& ids) const;                // any integer tensor, row-major

 private:
  std::string chars_;
  std::array<int16_t, 256> index_;
};

class CharDataset : public Dataset {
 public:
  // stride 0 means stride = context: non-overlapping input windows.
  CharDataset(std::string_view text, int64_t context, int64_t stride = 0);
  CharDataset(std::string_view text, CharVocab vocab, int64_t context, int64_t stride = 0);
  static std::shared_ptr<CharDataset> from_file(const std::string& path, int64_t context, int64_t stride = 0);

  int64_t size() const override;
  Example get(int64_t index) const override;  // input (T) i64, target (T) i64
  Batch get_batch(const std::vector<int64_t>& indices) const override;  // (B, T) i64 each

  const CharVocab& vocab() const { return vocab_; }
  int64_t context() const { return context_; }
  int64_t stride() const { return stride_; }
  int64_t num_tokens() const { return static_cast<int64_t>(ids_.size()); }
  std::vector<int64_t> encode(std::string_view text) const { return vocab_.encode(text); }
  std::string decode(const std::vector<int64_t>& ids) const { return vocab_.decode(ids); }

 private:
  CharVocab vocab_;
  std::vector<uint8_t> ids_;  // the corpus as ids (a vocabulary has at most 256 entries)
  int64_t context_;
  int64_t stride_;
};

}  // namespace kiln::data
