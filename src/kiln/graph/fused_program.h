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
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/graph/graph.h"

namespace kiln::graph::fused {

enum class Op : uint8_t {
  add, sub, mul, div, pow, maximum, minimum, prelu,
  neg, abs, exp, log, sqrt, rsqrt, tanh, sigmoid, relu, gelu, gelu_tanh, silu, erf,
  reciprocal, floor, ceil, round, sin, cos, softplus, softsign, hard_swish, sign,
  leaky_relu, elu, hard_sigmoid, selu, clamp,
};

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
};

// Parses a node's program attributes, checking operand references against its input count;
// throws ValueError naming the node on anything malformed.
Program parse(const Node& node);

// An f32 immediate as the program writes it ("#0.5", "#inf").
std::string immediate(float v);

}  // namespace kiln::graph::fused
