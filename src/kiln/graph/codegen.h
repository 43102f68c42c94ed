// Code generation for fused_elementwise programs (fused_program.h), elementwise and reduction
// programs alike: each program becomes C++ source with one extern "C" function (codegen_emit.cpp),
// compiled by the system compiler into a shared object at first use, cached on disk by content
// hash and loaded with dlopen (codegen_compile.cpp). The interpreters in kernels_fused.cpp and
// kernels_fused_reduce.cpp stay the fallback and the oracle.
//
// Environment: KILN_CODEGEN=off|on (default on), KILN_CXX (the compiler; default c++ or g++ on
// PATH), KILN_CODEGEN_CACHE (the cache folder; default $XDG_CACHE_HOME/kiln/codegen or
// ~/.cache/kiln/codegen). A missing compiler or a failed compile prints one warning line on
// stderr and leaves the program to the interpreter; it is never an error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/core/tensor.h"
#include "kiln/graph/fused_program.h"

namespace kiln::graph::codegen {

// The ABI of every generated function. inputs[k] is node input k; input_strides[k][d] its stride
// in elements along output dim d (0 where it is broadcast). outputs[j] is program output j,
// contiguous (row-major) in out_shape. rank >= 0 and at most kMaxRank. The function reads only
// inputs 0 .. FusedFunction::num_inputs - 1 and never writes them; outputs must not overlap the
// inputs. All-contiguous inputs take a fast path: one plain loop over all elements.
using FusedFn = void (*)(const float* const* inputs, const int64_t* const* input_strides, float* const* outputs,
                         const int64_t* out_shape, int64_t rank);
// The ABI of a reduction program's function (fused_program.h): `shape` is the element shape (rank
// dims, the last reduced_rank of them reduced; input_strides as above, in elements along each of
// them). outputs[j] is program output j: one value per row (rows = the product of the first
// rank - reduced_rank dims), contiguous in row-major order.
using FusedReduceFn = void (*)(const float* const* inputs, const int64_t* const* input_strides,
                               float* const* outputs, const int64_t* shape, int64_t rank, int64_t reduced_rank);
constexpr int64_t kMaxRank = 32;

// ---- emission (codegen_emit.cpp)

// The program in its canonical text, one line per instruction ("t1 = add t0 #0.5"), then one
// "outputs t2 t3" line: the form the fused node's attributes hold. The rank is not part of it:
// generated code is rank-generic, so one function serves every rank.
std::vector<std::string> program_lines(const fused::Program& prog);
std::string program_text(const fused::Program& prog);  // the lines joined, each ending in '\n'
// 16 hex digits: FNV-1a 64 of the text (not cryptographic: it names cache files).
std::string content_hash(std::string_view text);
// content_hash(program_text); generated functions are kiln_fused_<hash>.
std::string program_hash(const fused::Program& prog);
std::string symbol_name(const fused::Program& prog);  // "kiln_fused_<hash>"
// Inputs the generated code addresses: the highest in<k> the program reads, plus one.
int num_inputs_read(const fused::Program& prog);
// The complete translation unit: self-contained (only <stdint.h>), deterministic (golden files
// pin it), the same bits on every machine when compiled with compile_flags(). A reduction program
// exports a FusedReduceFn, any other program a FusedFn. The reduced axis count and keepdims are
// not part of the source either: they only shape the call (run_reduction).
std::string emit_source(const fused::Program& prog);

// ---- compiling, caching, loading (codegen_compile.cpp)

enum class Mode { off, on };
Mode mode();                                    // the override if set, else KILN_CODEGEN
void set_mode_override(std::optional<Mode> m);  // tests: force the interpreter (the oracle) or codegen

struct FusedFunction {
  FusedFn fn = nullptr;              // elementwise programs
  FusedReduceFn reduce_fn = nullptr;  // reduction programs
  std::string symbol;   // kiln_fused_<program hash>
  std::string so_path;  // the cached shared object it was loaded from
  int num_inputs = 0;   // num_inputs_read(program)
  int num_outputs = 0;
};

// The loaded function for a program, compiling it on first use; nullptr when the interpreter must
// run it (codegen off, no compiler, the compile failed: a warning was printed once). Thread-safe;
// the pointer stays valid for the life of the process. A failure is remembered per program until
// clear_memory_cache().
const FusedFunction* find_or_compile(const fused::Program& prog);

// Runs `fn` over f32 `inputs` (any strides, broadcast to the outputs' shape) into `outputs`
// (allocated by the caller: contiguous f32, all of the broadcast shape left-padded to the
// program's rank). Merges dims and splits the outer dim across the thread pool.
void run(const FusedFunction& fn, const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs);
// The same for a reduction program's function: `elements` is the element shape (the inputs'
// broadcast shape, left-padded to the program's rank), whose last `reduced_axes` dims are reduced;
// each output holds one value per row (contiguous f32, keepdims either way). Merges dims within
// the kept and within the reduced dims and splits the rows across the thread pool.
void run_reduction(const FusedFunction& fn, const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs,
                   const Shape& elements, int64_t reduced_axes);

// The hook for the fused_elementwise kernel: find_or_compile + run (run_reduction for a reduction
// program, whose outputs are then of the reduced shape). Returns false (outputs untouched) when the
// interpreter must run the program instead.
bool run_generated(const fused::Program& prog, const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs);

// The compiler generated code would use now: $KILN_CXX (a path, or a name looked up on PATH), else
// c++ or g++ on PATH; nullopt when there is none.
std::optional<std::string> find_compiler();
// Flags of every compile: -O3 -fPIC -shared -ffp-contract=off ... plus -mavx2 -mfma when this CPU
// has them. No contraction into FMA, so results do not depend on the machine.
std::vector<std::string> compile_flags();
std::string cache_dir();  // $KILN_CODEGEN_CACHE, else the default above

struct Stats {
  int64_t compiles = 0;     // compiler invocations
  int64_t disk_hits = 0;    // shared objects loaded from the cache without compiling
  int64_t memory_hits = 0;  // find_or_compile answered from memory
  int64_t failures = 0;     // programs left to the interpreter (no compiler, failed compile)
};
Stats stats();
// Forgets loaded functions and remembered failures (the shared objects stay mapped): the next
// find_or_compile goes to the disk cache. For tests.
void clear_memory_cache();

}  // namespace kiln::graph::codegen
