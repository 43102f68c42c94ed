// The auto-tuner's memory: which kernel configuration won for which problem, persisted in a
// text file so tuning is paid once per machine. Entries are keyed by a caller-chosen string
// ("gemm:<shape>", "conv:<shape>", ...); the file itself is named after the CPU model and the
// instruction set in use, so results measured on one machine never steer another.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::ops::cpu {

// How tuning behaves, from KILN_AUTOTUNE: "off" (defaults only, ignore the file), "cached"
// (use the file when it has an entry, never measure; the default), "on" (measure unseen
// problems on first use and append them to the file).
enum class TuneMode { off, cached, on };
TuneMode tune_mode();
void set_tune_mode(TuneMode mode);  // overrides the environment (kiln tune-kernels, tests)

// Path of the cache file: $KILN_TUNE_CACHE if set, else $XDG_CACHE_HOME/kiln or ~/.cache/kiln,
// then "tune-<cpu model>-<isa>.txt".
std::string tune_cache_path();

std::optional<std::string> tune_cache_get(std::string_view key);
// Records an entry in memory and rewrites the file atomically (temp file + rename), so a crash
// never leaves a half-written cache. Write failures (read-only home) are ignored: tuning is an
// optimisation, never a reason to fail.
void tune_cache_put(std::string_view key, std::string_view value);
void tune_cache_clear_memory();  // forget loaded entries (tests)
size_t tune_cache_size();         // entries known (loaded from the file or added)

// "AMD EPYC 7B13" etc., from /proc/cpuinfo (or "unknown-cpu"), sanitised for a file name.
std::string cpu_model_name();

}  // namespace kiln::ops::cpu
