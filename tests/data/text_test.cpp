// Character-level text dataset: vocabulary, encode/decode, window layout, batches.
#include <algorithm>
#include <filesystem>

#include <gtest/gtest.h>

#include "data/test_util.h"
#include "kiln/data/text.h"

using namespace kiln;
using namespace kiln::data;

TEST(Text, VocabularyIsSortedDistinctBytes) {
  CharVocab v = CharVocab::from_text("hello world");
  EXPECT_EQ(v.chars(), " dehlorw");
  EXPECT_EQ(v.size(), 8);
  EXPECT_EQ(v.id(' '), 0);
  EXPECT_EQ(v.id('w'), 7);
  auto ids = v.encode("world hello");
  EXPECT_EQ(ids, (std::vector<int64_t>{7, 5, 6, 4, 1, 0, 3, 2, 4, 4, 5}));
  EXPECT_EQ(v.decode(ids), "world hello");
  EXPECT_THROW(v.encode("hex"), ValueError);
  EXPECT_THROW(v.decode(std::vector<int64_t>{8}), IndexError);
  EXPECT_THROW(v.decode(std::vector<int64_t>{-1}), IndexError);
  EXPECT_THROW(CharVocab("aba"), ValueError);
  // Bytes above 127 (UTF-8) survive a round trip.
  std::string utf8 = "caf\xc3\xa9 \xe2\x80\x94";
  CharVocab u = CharVocab::from_text(utf8);
  EXPECT_EQ(u.decode(u.encode(utf8)), utf8);
  EXPECT_EQ(u.decode(Tensor::from_vector<int64_t>(u.encode(utf8))), utf8);
}

TEST(Text, WindowsAreShiftedByOne) {
  CharDataset ds("hello world", 4);  // stride = context: non-overlapping inputs
  // 11 characters, windows need T+1 = 5: starts 0 and 4 (8 would need index 12).
  ASSERT_EQ(ds.size(), 2);
  const CharVocab& v = ds.vocab();
  Example e0 = ds.get(0), e1 = ds.get(1);
  EXPECT_EQ(e0.input.shape(), (Shape{4}));
  EXPECT_EQ(v.decode(e0.input), "hell");
  EXPECT_EQ(v.decode(e0.target), "ello");
  EXPECT_EQ(v.decode(e1.input), "o wo");
  EXPECT_EQ(v.decode(e1.target), " wor");
  EXPECT_THROW(ds.get(2), IndexError);

  CharDataset overlapping("hello world", 4, 1);
  ASSERT_EQ(overlapping.size(), 7);
  Batch b = overlapping.get_batch({6, 0});
  EXPECT_EQ(b.input.shape(), (Shape{2, 4}));
  EXPECT_EQ(b.input.dtype(), DType::i64);
  EXPECT_EQ(v.decode(b.input), "worlhell");
  EXPECT_EQ(v.decode(b.target), "orldello");
  EXPECT_EQ(b.indices, (std::vector<int64_t>{6, 0}));

  // Every window's target is its input moved left by one character.
  CharDataset s2("the quick brown fox jumps over the lazy dog", 8, 3);
  for (int64_t i = 0; i < s2.size(); ++i) {
    Example e = s2.get(i);
    auto in = e.input.to_vector<int64_t>(), tg = e.target.to_vector<int64_t>();
    for (size_t t = 0; t + 1 < in.size(); ++t) EXPECT_EQ(tg[t], in[t + 1]);
  }
  EXPECT_EQ(s2.size(), (43 - 9) / 3 + 1);
  EXPECT_EQ(CharDataset("abc", 3).size(), 0);  // too short for one window
  EXPECT_THROW(CharDataset("abc", 0), ValueError);
}

TEST(Text, SharedVocabularyAndFiles) {
  CharVocab v = CharVocab::from_text("abcdef");
  CharDataset val("fedcba", v, 2);
  EXPECT_EQ(val.vocab().chars(), "abcdef");
  EXPECT_THROW(CharDataset("xyz", v, 2), ValueError);  // 'x' is outside the training vocabulary

  test::ScratchDir dir;
  test::write_bytes(dir.file("corpus.txt"), "In the beginning\n");
  auto ds = CharDataset::from_file(dir.file("corpus.txt"), 5);
  EXPECT_EQ(ds->num_tokens(), 17);
  EXPECT_EQ(ds->decode(ds->get(0).input.to_vector<int64_t>()), "In th");
  EXPECT_THROW(CharDataset::from_file(dir.file("nope.txt"), 5), IoError);
  test::write_bytes(dir.file("empty.txt"), "");
  EXPECT_THROW(CharDataset::from_file(dir.file("empty.txt"), 5), IoError);
}

// The demo corpus produced by scripts/setup.sh (skipped when setup has not run).
TEST(Text, LoadsTheKjvCorpus) {
  const std::string path = std::string(KILN_SOURCE_DIR) + "/data/kjv.txt";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found (run scripts/setup.sh)";
  auto ds = CharDataset::from_file(path, 256);
  EXPECT_GT(ds->num_tokens(), 4000000);
  EXPECT_EQ(ds->size(), (ds->num_tokens() - 257) / 256 + 1);
  const std::string& chars = ds->vocab().chars();
  EXPECT_LT(ds->vocab().size(), 100);  // plain English text: a small alphabet
  EXPECT_TRUE(std::is_sorted(chars.begin(), chars.end()));
  for (char c : std::string("\n .,:;abcxyzABCYZ")) EXPECT_TRUE(ds->vocab().contains(c)) << c;
  const std::string text = test::read_bytes(path);
  const size_t at = text.find("In the beginning God created the heaven and the earth.");
  ASSERT_NE(at, std::string::npos);
  // Window w covers text[256 w, 256 w + 256): decode it back and compare with the file.
  const int64_t w = static_cast<int64_t>(at / 256);
  Example e = ds->get(w);
  EXPECT_EQ(ds->vocab().decode(e.input), text.substr(static_cast<size_t>(w) * 256, 256));
  EXPECT_EQ(ds->vocab().decode(e.target), text.substr(static_cast<size_t>(w) * 256 + 1, 256));
}
