// A main() for the libFuzzer targets when built without libFuzzer (g++, the test suite): feeds
// every corpus file, then a fixed number of deterministic random mutants of each (bit flips, byte
// overwrites, truncations, insertions, deletions, duplicated chunks), to LLVMFuzzerTestOneInput.
// Usage: replay [--mutations N] [--seed S] FILE_OR_DIR...   Exits non-zero only by crashing; on a
// crash (signal, uncaught exception) the input is saved as replay-crash.bin in the working
// directory, for the libFuzzer build to replay: build-fuzz/fuzz/fuzz_<target> replay-crash.bin
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

using Bytes = std::vector<uint8_t>;

// splitmix64: tiny, deterministic across platforms and standard libraries.
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }
};

// The input being run, for the crash handler.
const uint8_t* g_current = nullptr;
size_t g_current_size = 0;

// Saves the input that crashed, then dies of the same signal. Only async-signal-safe calls.
void on_crash(int sig) {
  const char kPath[] = "replay-crash.bin";
  const int fd = ::open(kPath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    size_t done = 0;
    while (done < g_current_size) {
      const ssize_t w = ::write(fd, g_current + done, g_current_size - done);
      if (w <= 0) break;
      done += static_cast<size_t>(w);
    }
    ::close(fd);
    const char msg[] = "replay: crashed; the input is saved in replay-crash.bin\n";
    [[maybe_unused]] ssize_t ignored = ::write(2, msg, sizeof msg - 1);
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void run(const Bytes& input) {
  // An exact-size heap copy, so that a read one past the end is a heap overflow under ASan.
  auto* buf = new uint8_t[input.size() + (input.empty() ? 1 : 0)];
  if (!input.empty()) std::memcpy(buf, input.data(), input.size());
  g_current = buf;
  g_current_size = input.size();
  LLVMFuzzerTestOneInput(buf, input.size());
  g_current = nullptr;
  g_current_size = 0;
  delete[] buf;
}

void mutate_once(Bytes& b, Rng& rng) {
  static const uint8_t kInteresting[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '0', '9', '(', ')', ',', '\'', '{', '}'};
  switch (rng.below(6)) {
    case 0:
      if (!b.empty()) b[rng.below(b.size())] ^= static_cast<uint8_t>(1u << rng.below(8));
      break;
    case 1:
      if (!b.empty())
        b[rng.below(b.size())] = rng.below(2) ? kInteresting[rng.below(sizeof kInteresting)]
                                              : static_cast<uint8_t>(rng.next());
      break;
    case 2: b.resize(rng.below(b.size() + 1)); break;
    case 3: {
      const size_t at = rng.below(b.size() + 1), n = 1 + rng.below(8);
      Bytes ins(n);
      for (auto& x : ins) x = static_cast<uint8_t>(rng.next());
      b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), ins.begin(), ins.end());
      break;
    }
    case 4:
      if (!b.empty()) {
        const size_t at = rng.below(b.size()), n = 1 + rng.below(std::min<size_t>(16, b.size() - at));
        b.erase(b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(at + n));
      }
      break;
    case 5:
      if (!b.empty()) {
        const size_t from = rng.below(b.size()), n = 1 + rng.below(std::min<size_t>(32, b.size() - from));
        const Bytes chunk(b.begin() + static_cast<std::ptrdiff_t>(from),
                          b.begin() + static_cast<std::ptrdiff_t>(from + n));
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(rng.below(b.size() + 1)), chunk.begin(), chunk.end());
      }
      break;
  }
}

Bytes read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

int main(int argc, char** argv) {
  long mutations = 1000;
  uint64_t seed = 1;
  std::vector<std::filesystem::path> files;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--mutations" && i + 1 < argc) {
      mutations = std::strtol(argv[++i], nullptr, 10);
    } else if (a == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (std::filesystem::is_directory(a)) {
      for (const auto& e : std::filesystem::directory_iterator(a))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (std::filesystem::is_regular_file(a)) {
      files.push_back(a);
    } else {
      std::fprintf(stderr, "replay: no such file or directory: %s\n", a.c_str());
      return 2;
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "replay: no corpus files given\n");
    return 2;
  }
  for (int sig : {SIGSEGV, SIGFPE, SIGABRT, SIGBUS, SIGILL}) std::signal(sig, on_crash);
  std::sort(files.begin(), files.end());  // the same order everywhere, so runs are reproducible
  const auto start = std::chrono::steady_clock::now();
  Rng rng{seed};
  long runs = 0;
  run({});
  for (const auto& f : files) {
    const Bytes original = read_all(f);
    run(original);
    ++runs;
    for (long m = 0; m < mutations; ++m) {
      Bytes b = original;
      for (size_t k = 1 + rng.below(4); k > 0; --k) mutate_once(b, rng);
      run(b);
      ++runs;
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("replay: %zu corpus files, %ld inputs, %.2f s\n", files.size(), runs, s);
  return 0;
}
