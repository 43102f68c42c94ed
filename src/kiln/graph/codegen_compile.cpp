// Generated source -> loaded function (codegen.h): finds the system compiler, compiles into the
// on-disk cache (named by content hash, written atomically: temp file + rename, so concurrent
// processes and crashes never leave a half-written object), dlopens and dlsyms. Every failure
// becomes one warning line and a nullptr, so the interpreter runs the program instead.
#include <dlfcn.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>
#include <string>
#include <variant>
#include <vector>

#include "kiln/graph/codegen.h"
#include "kiln/ops/cpu/float_kernels.h"

extern char** environ;

namespace kiln::graph::codegen {

namespace {

namespace fs = std::filesystem;

struct State {
  std::mutex mu;
  // memory_key -> its function; a null entry remembers a failure
  std::unordered_map<std::string, std::unique_ptr<FusedFunction>> loaded;
  std::vector<std::unique_ptr<FusedFunction>> retired;  // forgotten by clear_memory_cache, still valid
  std::set<std::string, std::less<>> warned;
  std::atomic<int> mode_override{-1};  // -1: none, else a Mode
  std::atomic<int64_t> compiles{0}, disk_hits{0}, memory_hits{0}, failures{0};
  std::atomic<uint64_t> temp_counter{0};
};

State& state() {
  static State s;
  return s;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

bool executable_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// A path ("/usr/bin/g++", "./cxx") is taken as is; a bare name is looked up on PATH.
std::optional<std::string> which(const std::string& name) {
  if (name.find('/') != std::string::npos) return executable_file(name) ? std::optional(name) : std::nullopt;
  std::string path = env("PATH");
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find(':', i);
    if (j == std::string::npos) j = path.size();
    std::string dir = j > i ? path.substr(i, j - i) : ".";
    if (executable_file(dir + "/" + name)) return dir + "/" + name;
    i = j + 1;
  }
  return std::nullopt;
}

// The compiler's identity for the cache key: its real path, size and modification time, so an
// upgraded compiler never reuses objects built by the old one (and costs no process to ask).
std::string compiler_identity(const std::string& cxx) {
  std::error_code ec;
  fs::path real = fs::canonical(cxx, ec);
  if (ec) real = cxx;
  struct stat st {};
  ::stat(real.c_str(), &st);
  return real.string() + ":" + std::to_string(st.st_size) + ":" + std::to_string(st.st_mtime);
}

void warn_once(State& s, const std::string& message) {
  if (!s.warned.insert(message).second) return;
  std::fprintf(stderr, "kiln: codegen: %s; fused kernels run in the interpreter\n", message.c_str());
}

// Writes `text` to `path` atomically.
bool write_file_atomic(const std::string& path, const std::string& text, uint64_t tag) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(tag);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.good()) {
      std::remove(tmp.c_str());
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

// Runs the compiler with stdout and stderr into `log_path`; its exit status, or -1 when it could
// not be started.
int run_compiler(const std::string& cxx, const std::vector<std::string>& args, const std::string& log_path) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(cxx.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, cxx.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// dlopen + dlsym; nullptr when either fails. The handle is never closed: the function may be
// running on another thread when the cache is cleared, and a process loads few programs.
// Sets f.fn or f.reduce_fn (by the program's kind) and returns whether it was found.
bool load(FusedFunction& f, bool reduction) {
  void* handle = ::dlopen(f.so_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) return false;
  void* fn = ::dlsym(handle, f.symbol.c_str());
  if (reduction) f.reduce_fn = reinterpret_cast<FusedReduceFn>(fn);
  else f.fn = reinterpret_cast<FusedFn>(fn);
  return fn != nullptr;
}

// The identity of a program in memory: its instructions as raw bytes (cheaper per call than
// program_text, which formats every immediate).
std::string memory_key(const fused::Program& prog) {
  std::string key;
  auto put = [&](const void* p, size_t n) { key.append(static_cast<const char*>(p), n); };
  for (const fused::Instr& ins : prog.code) {
    key += static_cast<char>(ins.spec->op);
    for (const fused::Operand& o : ins.args) {
      key += static_cast<char>(o.kind);
      if (o.kind == fused::Operand::Kind::imm) put(&o.imm, sizeof o.imm);
      else put(&o.index, sizeof o.index);
    }
  }
  key += '\xff';
  for (int j : prog.outputs) put(&j, sizeof j);
  return key;
}

// The body of find_or_compile for a program not in memory, with the state locked. Returns the
// function, or a message saying why there is none.
std::variant<std::unique_ptr<FusedFunction>, std::string> build(State& s, const fused::Program& prog) {
  std::optional<std::string> cxx = find_compiler();
  if (!cxx) {
    std::string set = env("KILN_CXX");
    return set.empty() ? std::string("no C++ compiler (c++ or g++) on PATH")
                       : "KILN_CXX='" + set + "' is not an executable compiler";
  }
  auto f = std::make_unique<FusedFunction>();
  f->symbol = symbol_name(prog);
  f->num_inputs = num_inputs_read(prog);
  f->num_outputs = static_cast<int>(prog.outputs.size());
  const std::string source = emit_source(prog);
  const std::vector<std::string> flags = compile_flags();
  std::string key = source + "\n" + compiler_identity(*cxx);
  for (const std::string& fl : flags) key += " " + fl;
  const std::string dir = cache_dir();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return "cannot create the cache folder " + dir + " (" + ec.message() + ")";
  const std::string base = dir + "/" + f->symbol + "-" + content_hash(key);
  f->so_path = base + ".so";

  if (fs::exists(f->so_path, ec)) {
    if (load(*f, prog.is_reduction())) {
      ++s.disk_hits;
      return f;
    }
    // unreadable or foreign: rebuild it below (the rename replaces it atomically)
  }
  const uint64_t tag = ++s.temp_counter;
  if (!write_file_atomic(base + ".cc", source, tag)) return "cannot write " + base + ".cc";
  const std::string tmp_so = base + ".so.tmp." + std::to_string(::getpid()) + "." + std::to_string(tag);
  std::vector<std::string> args = flags;
  args.insert(args.end(), {base + ".cc", "-o", tmp_so});
  ++s.compiles;
  const int status = run_compiler(*cxx, args, base + ".log");
  if (status != 0) {
    std::remove(tmp_so.c_str());
    return status < 0 ? "could not run " + *cxx
                      : "compiling " + f->symbol + " with " + *cxx + " failed (see " + base + ".log)";
  }
  if (std::rename(tmp_so.c_str(), f->so_path.c_str()) != 0) {
    std::remove(tmp_so.c_str());
    return "cannot write " + f->so_path;
  }
  std::remove((base + ".log").c_str());
  if (!load(*f, prog.is_reduction())) {
    const char* why = ::dlerror();
    return "cannot load " + f->so_path + (why ? std::string(": ") + why : std::string());
  }
  return f;
}

}  // namespace

Mode mode() {
  int o = state().mode_override.load();
  if (o >= 0) return static_cast<Mode>(o);
  std::string v = env("KILN_CODEGEN");
  return v == "off" || v == "0" || v == "false" ? Mode::off : Mode::on;
}

void set_mode_override(std::optional<Mode> m) { state().mode_override = m ? static_cast<int>(*m) : -1; }

std::optional<std::string> find_compiler() {
  if (std::string set = env("KILN_CXX"); !set.empty()) return which(set);
  if (auto c = which("c++")) return c;
  return which("g++");
}

std::vector<std::string> compile_flags() {
  // -fno-math-errno and -fno-trapping-math as the kernels of ops/cpu are built: sqrt inlines and
  // the selects vectorise; neither changes a result. No -march=native: the code must give the
  // same bits on every machine, and only these two extensions are asked for.
  std::vector<std::string> f = {"-std=c++17",        "-O3", "-fPIC", "-shared", "-ffp-contract=off", "-fno-math-errno",
                                "-fno-trapping-math"};
  if (ops::cpu::simd_level() != "portable" && ops::cpu::cpu_supports_isa("avx2")) {
    f.push_back("-mavx2");
    f.push_back("-mfma");
  }
  return f;
}

std::string cache_dir() {
  if (std::string d = env("KILN_CODEGEN_CACHE"); !d.empty()) return d;
  if (std::string x = env("XDG_CACHE_HOME"); !x.empty()) return x + "/kiln/codegen";
  if (std::string h = env("HOME"); !h.empty()) return h + "/.cache/kiln/codegen";
  return "/tmp/kiln-cache/codegen";
}

const FusedFunction* find_or_compile(const fused::Program& prog) {
  if (mode() == Mode::off) return nullptr;
  State& s = state();
  const std::string key = memory_key(prog);
  std::lock_guard<std::mutex> lock(s.mu);
  if (auto it = s.loaded.find(key); it != s.loaded.end()) {
    ++s.memory_hits;
    return it->second.get();
  }
  auto result = build(s, prog);
  if (auto* why = std::get_if<std::string>(&result)) {
    warn_once(s, *why);
    ++s.failures;
    s.loaded[key] = nullptr;
    return nullptr;
  }
  auto& slot = s.loaded[key];
  slot = std::move(std::get<std::unique_ptr<FusedFunction>>(result));
  return slot.get();
}

Stats stats() {
  State& s = state();
  return Stats{s.compiles.load(), s.disk_hits.load(), s.memory_hits.load(), s.failures.load()};
}

void clear_memory_cache() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  for (auto& [key, f] : s.loaded)
    if (f) s.retired.push_back(std::move(f));
  s.loaded.clear();
  s.warned.clear();
}

}  // namespace kiln::graph::codegen
