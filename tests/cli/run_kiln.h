// Runs the real `kiln` binary for the CLI tests and captures its exit code, stdout and stderr.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace kiln::testing {

struct RunResult {
  int code = -1;
  std::string out;
  std::string err;
};

inline std::string kiln_binary() { return std::string(KILN_BINARY_DIR) + "/kiln"; }

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// args is appended to the binary path as shell words; runs in `cwd` (the source dir by default,
// so relative paths like examples/... work).
inline RunResult run_kiln(const std::string& args, const std::string& cwd = KILN_SOURCE_DIR) {
  auto tmp = std::filesystem::temp_directory_path() / ("kiln_cli_" + std::to_string(getpid()));
  std::filesystem::create_directories(tmp);
  std::string out = (tmp / "out").string(), err = (tmp / "err").string();
  std::string cmd = "cd '" + cwd + "' && '" + kiln_binary() + "' " + args + " >'" + out + "' 2>'" + err + "'";
  int status = std::system(cmd.c_str());
  RunResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

inline int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// A fresh temporary directory for one test.
inline std::string temp_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("kiln_test_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

}  // namespace kiln::testing
