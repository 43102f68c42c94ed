// The tuning cache file: one "key<TAB>value" line per entry, loaded lazily on first lookup.
#include "kiln/ops/cpu/tune_cache.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "kiln/core/error.h"
#include "kiln/ops/cpu/float_kernels.h"

namespace kiln::ops::cpu {

namespace {

struct CacheState {
  std::mutex mu;
  bool loaded = false;
  std::map<std::string, std::string, std::less<>> entries;
  std::optional<TuneMode> forced_mode;
};

CacheState& state() {
  static CacheState s;
  return s;
}

std::string sanitise(std::string s) {
  for (char& c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
      c = '_';
  return s;
}

void load_locked(CacheState& st) {
  if (st.loaded) return;
  st.loaded = true;
  std::ifstream in(tune_cache_path());
  std::string line;
  while (std::getline(in, line)) {
    auto tab = line.find('\t');
    if (tab == std::string::npos || tab == 0) continue;  // tolerate damage: skip, don't fail
    st.entries[line.substr(0, tab)] = line.substr(tab + 1);
  }
}

void save_locked(const CacheState& st) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path path = tune_cache_path();
  fs::create_directories(path.parent_path(), ec);
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return;
    for (const auto& [k, v] : st.entries) out << k << '\t' << v << '\n';
    out.flush();
    if (!out) {
      fs::remove(tmp, ec);
      return;
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) fs::remove(tmp, ec);
}

}  // namespace

TuneMode tune_mode() {
  auto& st = state();
  {
    std::lock_guard<std::mutex> lock(st.mu);
    if (st.forced_mode) return *st.forced_mode;
  }
  static const TuneMode env_mode = [] {
    const char* v = std::getenv("KILN_AUTOTUNE");
    std::string s = v ? v : "";
    if (s == "off" || s == "0") return TuneMode::off;
    if (s == "on" || s == "1") return TuneMode::on;
    KILN_CHECK(s.empty() || s == "cached", "KILN_AUTOTUNE: unknown value '", s,
               "' (expected on, cached or off)");
    return TuneMode::cached;
  }();
  return env_mode;
}

void set_tune_mode(TuneMode mode) {
  auto& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  st.forced_mode = mode;
}

std::string cpu_model_name() {
  static const std::string name = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("model name", 0) == 0) {
        auto colon = line.find(':');
        if (colon != std::string::npos) {
          std::string v = line.substr(colon + 1);
          while (!v.empty() && v.front() == ' ') v.erase(v.begin());
          while (!v.empty() && v.back() == ' ') v.pop_back();
          if (!v.empty()) return sanitise(v);
        }
      }
    }
    return std::string("unknown-cpu");
  }();
  return name;
}

std::string tune_cache_path() {
  if (const char* p = std::getenv("KILN_TUNE_CACHE"); p && *p) return p;
  std::string dir;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x)
    dir = std::string(x) + "/kiln";
  else if (const char* h = std::getenv("HOME"); h && *h)
    dir = std::string(h) + "/.cache/kiln";
  else
    dir = "/tmp/kiln-cache";
  return dir + "/tune-" + cpu_model_name() + "-" + std::string(simd_level()) + ".txt";
}

std::optional<std::string> tune_cache_get(std::string_view key) {
  if (tune_mode() == TuneMode::off) return std::nullopt;
  auto& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  load_locked(st);
  auto it = st.entries.find(key);
  if (it == st.entries.end()) return std::nullopt;
  return it->second;
}

void tune_cache_put(std::string_view key, std::string_view value) {
  auto& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  load_locked(st);
  st.entries[std::string(key)] = std::string(value);
  save_locked(st);
}

void tune_cache_clear_memory() {
  auto& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  st.entries.clear();
  st.loaded = false;
}

}  // namespace kiln::ops::cpu

namespace kiln::ops::cpu {

size_t tune_cache_size() {
  auto& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  load_locked(st);
  return st.entries.size();
}

}  // namespace kiln::ops::cpu
