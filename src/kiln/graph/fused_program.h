// The program a fused_elementwise node carries: a straight-line list of f32 elementwise
// instructions, stored as node attributes in a small text form that is stable (a later code
// generator compiles it to C++) and readable in graph dumps. fuse_elementwise.cpp writes it,
// kernels_fused.cpp parses and interprets it.
//
//   fused_elementwise (in0, in1, ...) {program, outputs, rank}
//   program  ["t0 = mul in0 in1", "t1 = add t0 #0.5", "t2 = relu t1"]
//            one instruction per string: "t<k> = <op> <operand> ...", k = 0, 1, 2, ... in order.
//            <operand> is in<i> (node input i, broadcast to the output shape), t<j> (an earlier
//            result, j < k) or #<f32> (an immediate: a decimal that reads back as exactly that
//            f32 — "%.9g" — or inf, -inf, nan).
//   outputs  ["t2", ...]: the results that are node outputs, in node output order.
//   rank     the output rank. Every output has the broadcast shape of the inputs, left-padded
//            with 1s to `rank` (an immediate can add leading dims, like a scalar constant of
//            shape [1, 1]).
// Operators (each computes what the registry op of the same name computes in f32):
//   two operands:  add sub mul div pow maximum minimum prelu
//   one operand:   neg abs exp log sqrt rsqrt tanh sigmoid relu gelu gelu_tanh silu erf
//                  reciprocal floor ceil round sin cos softplus softsign hard_swish sign
//   operand and immediates:  leaky_relu x #alpha | elu x #alpha | hard_sigmoid x #alpha #beta |
//                  selu x #alpha #gamma | clamp x #lo #hi
// All values are f32.
//
// Reduction programs (fuse_elementwise.cpp, "reduction with fused producers"): the same node and
// attributes, plus exactly one reduce instruction and two attributes:
//   fused_elementwise (in0, ...) {program, outputs, rank, reduce_axes, keepdims}
//   program  ["t0 = mul in0 in0", "t1 = reduce_mean t0", "t2 = add t1 #1e-05", "t3 = rsqrt t2"]
//   reduce_axes  k >= 0: the trailing k of the `rank` element dims are reduced
//   keepdims     1 (default): the outputs keep the reduced dims as 1s; 0: they drop them
// The instructions before the reduce run per element of the broadcast element shape (as above);
// `t<r> = reduce_<op> <operand>` (op: sum mean max min prod) reduces its operand over each row (the
// trailing k dims) to one value per row; the instructions after it (the epilogue) run once per row
// and may read only the reduced value, later epilogue results and immediates. Every output is an
// epilogue result (or the reduced value): one value per row. Without a reduce instruction a
// program is the elementwise program above, unchanged. Each reduce accumulates in the order of the
// eager op on the materialised operand (ops::sum: 16 f32 lanes per block of 1024, blocks added in
// f64; max/min: the first extreme, the first NaN wins; prod: left to right in f32), so fused and
// unfused graphs agree bitwise up to the elementwise ops' own tolerance.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/core/strided_loop.h"
#include "kiln/graph/graph.h"

namespace kiln::graph::fused {

enum class Op : uint8_t {
  add, sub, mul, div, pow, maximum, minimum, prelu,
  neg, abs, exp, log, sqrt, rsqrt, tanh, sigmoid, relu, gelu, gelu_tanh, silu, erf,
  reciprocal, floor, ceil, round, sin, cos, softplus, softsign, hard_swish, sign,
  leaky_relu, elu, hard_sigmoid, selu, clamp,
  reduce_sum, reduce_mean, reduce_max, reduce_min, reduce_prod,  // reduction programs only
};

inline bool is_reduce(Op op) { return op >= Op::reduce_sum; }

struct OpSpec {
  std::string_view name;
  Op op;
  int operands;    // value operands (in/t/#)
  int immediates;  // trailing parameters, always immediates
};

// The spec of an instruction name, or nullptr.
const OpSpec* find_spec(std::string_view name);

struct Operand {
  enum class Kind : uint8_t { input, temp, imm } kind = Kind::imm;
  int index = 0;  // input or temp number
  float imm = 0;
};

struct Instr {
  const OpSpec* spec = nullptr;
  std::vector<Operand> args;  // operands, then immediates
};

struct Program {
  std::vector<Instr> code;   // instruction k defines t<k>
  std::vector<int> outputs;  // temp numbers
  int64_t rank = 0;
  // Reduction programs: code[reduce_at] is the reduce instruction (-1: an elementwise program).
  int reduce_at = -1;
  int64_t reduce_axes = 0;  // trailing element dims reduced
  bool keepdims = true;

  bool is_reduction() const { return reduce_at >= 0; }
  Op reduce_op() const { return code[static_cast<size_t>(reduce_at)].spec->op; }
};

// Parses a node's program attributes, checking operand references against its input count and
// the rules of reduction programs; throws ValueError naming the node on anything malformed.
Program parse(const Node& node);

// The output shape of a reduction program over the broadcast element shape `elements`.
Shape reduced_shape(const Program& prog, const Shape& elements);

// ---- the interpreter's building blocks (kernels_fused.cpp), shared by both program kinds

// A tile's worth of one operand: p[i * s], s in {0, 1} (0: one value broadcast over the tile).
struct Ref {
  const float* p;
  int64_t s;
};

// How the interpreter reads one node input: a single element (broadcast), a contiguous full-size
// tensor (read in place), or anything else (gathered tile by tile through a strided layout).
struct Source {
  const float* base = nullptr;
  enum class Mode : uint8_t { scalar, direct, gather } mode = Mode::direct;
  std::optional<StridedLayout<1>> layout;
};

// Points inputs[i] at elements [lo, lo + count) of input i: in place (scalar, direct) or gathered
// into the next `tile`-float slot of `scratch` (one slot per gathered input).
void load_tile(const std::vector<Source>& src, int64_t lo, int64_t count, int64_t tile, float* scratch,
               std::vector<Ref>& inputs);

// o[0..n) = the (non-reduce) instruction `ins` over args (its value operands, in order): exactly
// what the eager op computes, with the same per-ISA loops.
void run_instr(const Instr& ins, const std::vector<Ref>& args, float* o, int64_t n);

// The fused_elementwise kernel for reduction programs (kernels_fused_reduce.cpp).
std::vector<Tensor> run_reduction(const Node& node, const Program& prog, const std::vector<Tensor>& in);

// An f32 immediate as the program writes it ("#0.5", "#inf").
std::string immediate(float v);

}  // namespace kiln::graph::fused
