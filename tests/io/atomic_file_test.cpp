// Atomic file replacement: content, no temporary left behind, old file kept on failure.
#include <algorithm>

#include <gtest/gtest.h>

#include "data/test_util.h"
#include "kiln/core/error.h"
#include "kiln/io/atomic_file.h"

using namespace kiln;
using kiln::test::ScratchDir;

namespace {
std::vector<std::string> names_in(const ScratchDir& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

TEST(AtomicFile, WritesAndReplaces) {
  ScratchDir dir;
  const std::string path = dir.file("f.bin");
  io::write_file_atomic(path, std::string("first\0version", 13));
  EXPECT_EQ(test::read_bytes(path), std::string("first\0version", 13));
  EXPECT_EQ(io::read_file(path), std::string("first\0version", 13));
  // A large write through the stream callback (bigger than the internal buffer) replaces it.
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 % 251);
  io::write_file_atomic(path, [&](std::ostream& os) {
    os << "hdr:";
    os.write(big.data(), static_cast<std::streamsize>(big.size()));
    os << ":end";
  });
  EXPECT_EQ(io::read_file(path), "hdr:" + big + ":end");
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"f.bin"});  // no temporary file left
  io::write_file_atomic(path, "");
  EXPECT_EQ(io::read_file(path), "");
}

TEST(AtomicFile, FailedWriterKeepsOldFile) {
  ScratchDir dir;
  const std::string path = dir.file("keep.txt");
  io::write_file_atomic(path, "old contents");
  struct Boom : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  EXPECT_THROW(io::write_file_atomic(path,
                                     [](std::ostream& os) {
                                       os << std::string(200000, 'n');  // partly written, then fails
                                       throw Boom("writer failed");
                                     }),
               Boom);
  EXPECT_EQ(io::read_file(path), "old contents");
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"keep.txt"});
  // A writer that throws a kiln error: the same, and the error comes through unchanged.
  EXPECT_THROW(io::write_file_atomic(path, [](std::ostream&) { throw ValueError("bad state"); }), ValueError);
  EXPECT_EQ(io::read_file(path), "old contents");
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"keep.txt"});
}

TEST(AtomicFile, ErrorsNameTheFile) {
  ScratchDir dir;
  const std::string nowhere = dir.file("no/such/dir/x.bin");
  try {
    io::write_file_atomic(nowhere, "data");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(nowhere), std::string::npos) << e.what();
  }
  try {
    io::read_file(dir.file("missing"));
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("missing: cannot open"), std::string::npos) << e.what();
  }
  EXPECT_THROW(io::read_file(dir.path().string()), IoError);  // a directory
  // A path that is a directory cannot be replaced; the temp file is cleaned up.
  std::filesystem::create_directory(dir.file("sub"));
  EXPECT_THROW(io::write_file_atomic(dir.file("sub"), "x"), IoError);
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"sub"});
}
