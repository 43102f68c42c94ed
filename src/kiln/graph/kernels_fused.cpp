// The graph kernel of fused_elementwise: an interpreter for the program of fused_program.h. It
// walks the output in tiles of kTile elements; every instruction runs over one tile into a small
// scratch buffer, so no intermediate of full size is ever written — the memory traffic is the
// inputs read once and the outputs written once. Each instruction computes exactly what the
// eager op does: the same per-ISA f32 loops (float_kernels.h) or the same scalar formulas.
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kiln/graph/codegen.h"
#include "kiln/graph/fused_program.h"
#include "kiln/graph/kernels.h"
#include "kiln/ops/cpu/elementwise_loops.h"
#include "kiln/ops/cpu/float_kernels.h"

namespace kiln::graph {

namespace fused {

namespace {

constexpr OpSpec kSpecs[] = {
    {"add", Op::add, 2, 0},          {"sub", Op::sub, 2, 0},
    {"mul", Op::mul, 2, 0},          {"div", Op::div, 2, 0},
    {"pow", Op::pow, 2, 0},          {"maximum", Op::maximum, 2, 0},
    {"minimum", Op::minimum, 2, 0},  {"prelu", Op::prelu, 2, 0},
    {"neg", Op::neg, 1, 0},          {"abs", Op::abs, 1, 0},
    {"exp", Op::exp, 1, 0},          {"log", Op::log, 1, 0},
    {"sqrt", Op::sqrt, 1, 0},        {"rsqrt", Op::rsqrt, 1, 0},
    {"tanh", Op::tanh, 1, 0},        {"sigmoid", Op::sigmoid, 1, 0},
    {"relu", Op::relu, 1, 0},        {"gelu", Op::gelu, 1, 0},
    {"gelu_tanh", Op::gelu_tanh, 1, 0}, {"silu", Op::silu, 1, 0},
    {"erf", Op::erf, 1, 0},          {"reciprocal", Op::reciprocal, 1, 0},
    {"floor", Op::floor, 1, 0},      {"ceil", Op::ceil, 1, 0},
    {"round", Op::round, 1, 0},      {"sin", Op::sin, 1, 0},
    {"cos", Op::cos, 1, 0},          {"softplus", Op::softplus, 1, 0},
    {"softsign", Op::softsign, 1, 0}, {"hard_swish", Op::hard_swish, 1, 0},
    {"sign", Op::sign, 1, 0},        {"leaky_relu", Op::leaky_relu, 1, 1},
    {"elu", Op::elu, 1, 1},          {"hard_sigmoid", Op::hard_sigmoid, 1, 2},
    {"selu", Op::selu, 1, 2},        {"clamp", Op::clamp, 1, 2},
    {"reduce_sum", Op::reduce_sum, 1, 0}, {"reduce_mean", Op::reduce_mean, 1, 0},
    {"reduce_max", Op::reduce_max, 1, 0}, {"reduce_min", Op::reduce_min, 1, 0},
    {"reduce_prod", Op::reduce_prod, 1, 0},
};

// "in3" -> 3 for prefix "in"; -1 when malformed.
int numbered(std::string_view tok, std::string_view prefix) {
  if (tok.size() <= prefix.size() || tok.substr(0, prefix.size()) != prefix) return -1;
  int v = 0;
  for (char c : tok.substr(prefix.size())) {
    if (c < '0' || c > '9' || v > 100000) return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

const std::vector<std::string>& strings_attr(const Node& node, std::string_view key) {
  auto it = node.attrs.find(key);
  const auto* v = it == node.attrs.end() ? nullptr : std::get_if<std::vector<std::string>>(&it->second);
  if (!v) kernel_error(node, detail::concat("needs a list-of-strings attribute '", key, "'"));
  return *v;
}

}  // namespace

const OpSpec* find_spec(std::string_view name) {
  for (const OpSpec& s : kSpecs)
    if (s.name == name) return &s;
  return nullptr;
}

std::string immediate(float v) {
  if (std::isnan(v)) return "#nan";
  if (std::isinf(v)) return v > 0 ? "#inf" : "#-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "#%.9g", static_cast<double>(v));
  return buf;
}

Program parse(const Node& node) {
  Program p;
  const auto& lines = strings_attr(node, "program");
  const int num_inputs = static_cast<int>(node.inputs.size());
  for (size_t k = 0; k < lines.size(); ++k) {
    auto bad = [&](std::string_view why) {
      kernel_error(node, detail::concat("program line ", k, " \"", lines[k], "\": ", why));
    };
    std::vector<std::string_view> tok = split(lines[k]);
    if (tok.size() < 4 || numbered(tok[0], "t") != static_cast<int>(k) || tok[1] != "=")
      bad(detail::concat("expected \"t", k, " = <op> <operands>\""));
    Instr ins;
    ins.spec = find_spec(tok[2]);
    if (!ins.spec) bad(detail::concat("unknown operator '", tok[2], "'"));
    if (static_cast<int>(tok.size()) - 3 != ins.spec->operands + ins.spec->immediates)
      bad(detail::concat(ins.spec->name, " takes ", ins.spec->operands, " operand(s) and ", ins.spec->immediates,
                         " immediate(s)"));
    for (size_t a = 3; a < tok.size(); ++a) {
      Operand o;
      std::string_view t = tok[a];
      bool must_be_imm = static_cast<int>(a - 3) >= ins.spec->operands;
      if (t[0] == '#') {
        std::string s(t.substr(1));
        char* end = nullptr;
        o.imm = std::strtof(s.c_str(), &end);
        if (s.empty() || end != s.c_str() + s.size()) bad(detail::concat("bad immediate '", t, "'"));
      } else if (must_be_imm) {
        bad(detail::concat("operand ", a - 3, " must be an immediate"));
      } else if (int i = numbered(t, "in"); i >= 0) {
        if (i >= num_inputs) bad(detail::concat("'", t, "' but the node has ", num_inputs, " input(s)"));
        o.kind = Operand::Kind::input;
        o.index = i;
      } else if (int j = numbered(t, "t"); j >= 0) {
        if (j >= static_cast<int>(k)) bad(detail::concat("'", t, "' is not defined yet"));
        o.kind = Operand::Kind::temp;
        o.index = j;
      } else {
        bad(detail::concat("bad operand '", t, "'"));
      }
      ins.args.push_back(o);
    }
    if (is_reduce(ins.spec->op)) {
      if (p.reduce_at >= 0) bad(detail::concat("a second reduction (the first is t", p.reduce_at, ")"));
      p.reduce_at = static_cast<int>(k);
    } else if (p.reduce_at >= 0) {
      // The epilogue runs once per row: it reads the reduced value, its own results, immediates.
      for (int a = 0; a < ins.spec->operands; ++a) {
        const Operand& o = ins.args[static_cast<size_t>(a)];
        if (o.kind == Operand::Kind::input || (o.kind == Operand::Kind::temp && o.index < p.reduce_at))
          bad(detail::concat("after the reduction t", p.reduce_at, " only row values and immediates can be read"));
      }
    }
    p.code.push_back(std::move(ins));
  }
  for (const std::string& o : strings_attr(node, "outputs")) {
    int j = numbered(o, "t");
    if (j < 0 || j >= static_cast<int>(p.code.size())) kernel_error(node, detail::concat("bad output '", o, "'"));
    if (j < p.reduce_at)
      kernel_error(node, detail::concat("output '", o, "' is computed before the reduction t", p.reduce_at));
    p.outputs.push_back(j);
  }
  if (p.outputs.empty()) kernel_error(node, "the program has no outputs");
  if (!node.outputs.empty() && p.outputs.size() != node.outputs.size())
    kernel_error(node, detail::concat(p.outputs.size(), " program outputs for ", node.outputs.size(), " node outputs"));
  p.rank = node.attr_int("rank", 0);
  if (p.is_reduction()) {
    p.reduce_axes = node.attr_int("reduce_axes", -1);
    p.keepdims = node.attr_int("keepdims", 1) != 0;
    if (p.reduce_axes < 0 || p.reduce_axes > p.rank)
      kernel_error(node, detail::concat("reduce_axes ", p.reduce_axes, " must be in [0, rank ", p.rank, "]"));
  } else if (node.has_attr("reduce_axes")) {
    kernel_error(node, "reduce_axes is set but the program has no reduce instruction");
  }
  return p;
}

Shape reduced_shape(const Program& prog, const Shape& elements) {
  const size_t kept = elements.size() - static_cast<size_t>(prog.reduce_axes);
  Shape out(elements.begin(), elements.begin() + static_cast<std::ptrdiff_t>(kept));
  if (prog.keepdims) out.resize(elements.size(), 1);
  return out;
}

namespace {

template <typename F>
void map1(float* o, Ref x, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) o[i] = f(x.p[i * x.s]);
}

}  // namespace

// o[0..n) = instruction(args). The formulas match ops/inference_math.cpp term by term.
void load_tile(const std::vector<Source>& src, int64_t lo, int64_t count, int64_t tile, float* scratch,
               std::vector<Ref>& inputs) {
  for (size_t i = 0; i < src.size(); ++i) {
    const Source& s = src[i];
    if (s.mode == Source::Mode::scalar) {
      inputs[i] = {s.base, 0};
    } else if (s.mode == Source::Mode::direct) {
      inputs[i] = {s.base + lo, 1};
    } else {
      float* dst = scratch;
      s.layout->for_each_run(lo, lo + count, [&](const auto& off, const auto& st, int64_t run) {
        const float* p = s.base + off[0];
        for (int64_t r = 0; r < run; ++r) *dst++ = p[r * st[0]];
      });
      inputs[i] = {scratch, 1};
      scratch += tile;
    }
  }
}

void run_instr(const Instr& ins, const std::vector<Ref>& a, float* o, int64_t n) {
  const auto& k = ops::cpu::float_kernels();
  using ops::cpu::BinaryOp;
  using ops::cpu::UnaryOp;
  auto bin = [&](BinaryOp op) { k.binary(op, o, a[0].p, a[0].s, a[1].p, a[1].s, n); };
  // The vectorised unary loops want a contiguous input; a broadcast one arrives with n == 1.
  auto un = [&](UnaryOp op) { k.unary(op, o, a[0].p, n); };
  const float p1 = ins.args.size() > 1 ? ins.args[1].imm : 0.f;
  const float p2 = ins.args.size() > 2 ? ins.args[2].imm : 0.f;
  switch (ins.spec->op) {
    case Op::add: return bin(BinaryOp::add);
    case Op::sub: return bin(BinaryOp::sub);
    case Op::mul: return bin(BinaryOp::mul);
    case Op::div: return bin(BinaryOp::div);
    case Op::pow: return bin(BinaryOp::pow);
    case Op::maximum: return bin(BinaryOp::maximum);
    case Op::minimum: return bin(BinaryOp::minimum);
    case Op::prelu:
      for (int64_t i = 0; i < n; ++i) {
        float v = a[0].p[i * a[0].s], s = a[1].p[i * a[1].s];
        o[i] = v < 0.f ? s * v : v;
      }
      return;
    case Op::neg: return un(UnaryOp::neg);
    case Op::abs: return un(UnaryOp::abs);
    case Op::exp: return un(UnaryOp::exp);
    case Op::log: return un(UnaryOp::log);
    case Op::sqrt: return un(UnaryOp::sqrt);
    case Op::rsqrt: return un(UnaryOp::rsqrt);
    case Op::tanh: return un(UnaryOp::tanh);
    case Op::sigmoid: return un(UnaryOp::sigmoid);
    case Op::relu: return un(UnaryOp::relu);
    case Op::gelu: return un(UnaryOp::gelu);
    case Op::gelu_tanh: return un(UnaryOp::gelu_tanh);
    case Op::silu: return un(UnaryOp::silu);
    case Op::erf: return map1(o, a[0], n, [](float v) { return std::erf(v); });
    case Op::reciprocal: return map1(o, a[0], n, [](float v) { return 1.f / v; });
    case Op::floor: return map1(o, a[0], n, [](float v) { return std::floor(v); });
    case Op::ceil: return map1(o, a[0], n, [](float v) { return std::ceil(v); });
    case Op::round: return map1(o, a[0], n, [](float v) { return std::nearbyint(v); });
    case Op::sin: return map1(o, a[0], n, [](float v) { return std::sin(v); });
    case Op::cos: return map1(o, a[0], n, [](float v) { return std::cos(v); });
    case Op::softplus:
      return map1(o, a[0], n, [](float v) { return (v > 0.f ? v : 0.f) + std::log1p(std::exp(-std::abs(v))); });
    case Op::softsign: return map1(o, a[0], n, [](float v) { return v / (1.f + std::abs(v)); });
    case Op::hard_swish:
      return map1(o, a[0], n, [](float v) {
        float y = v / 6.f + 0.5f;
        return v * (y < 0.f ? 0.f : (y > 1.f ? 1.f : y));
      });
    case Op::sign:
      return map1(o, a[0], n, [](float v) { return v > 0.f ? 1.f : (v < 0.f ? -1.f : v); });
    case Op::leaky_relu: return map1(o, a[0], n, [p1](float v) { return v < 0.f ? p1 * v : v; });
    case Op::elu: return map1(o, a[0], n, [p1](float v) { return v < 0.f ? p1 * std::expm1(v) : v; });
    case Op::hard_sigmoid:
      return map1(o, a[0], n, [p1, p2](float v) {
        float y = p1 * v + p2;
        return y < 0.f ? 0.f : (y > 1.f ? 1.f : y);
      });
    case Op::selu:
      return map1(o, a[0], n, [p1, p2](float v) { return v <= 0.f ? p2 * p1 * std::expm1(v) : p2 * v; });
    case Op::clamp:
      if (a[0].s == 1) return k.clamp(o, a[0].p, p1, p2, n);
      return map1(o, a[0], n, [p1, p2](float v) {
        float c = v < p1 ? p1 : v;
        return c > p2 ? p2 : c;
      });
    case Op::reduce_sum:
    case Op::reduce_mean:
    case Op::reduce_max:
    case Op::reduce_min:
    case Op::reduce_prod:
      break;
  }
  KILN_ASSERT(false, "fused: run_instr called on the reduction ", ins.spec->name);
}

}  // namespace fused

namespace {

using fused::Op;
using fused::Ref;

constexpr int64_t kTile = 1024;

using fused::Source;

std::vector<Tensor> fused_elementwise_kernel(const Node& node, const std::vector<Tensor>& in) {
  const fused::Program prog = fused::parse(node);
  if (prog.is_reduction()) return fused::run_reduction(node, prog, in);
  Shape shape;
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i].defined()) kernel_error(node, detail::concat("input ", i, " is missing"));
    if (in[i].dtype() != DType::f32)
      kernel_error(node, detail::concat("input ", i, " is ", dtype_name(in[i].dtype()), "; fused programs are f32"));
    shape = broadcast_shapes(shape, in[i].shape(), "fused_elementwise");
  }
  if (static_cast<int64_t>(shape.size()) > prog.rank)
    kernel_error(node, detail::concat("inputs broadcast to ", shape_str(shape), ", more than rank ", prog.rank));
  shape.insert(shape.begin(), static_cast<size_t>(prog.rank) - shape.size(), 1);
  std::vector<Tensor> outs;
  for (size_t j = 0; j < prog.outputs.size(); ++j) outs.push_back(Tensor::empty(shape, DType::f32));
  const int64_t n = numel(shape);
  if (n == 0) return outs;
  if (codegen::run_generated(prog, in, outs)) return outs;  // compiled C++ (codegen.h); else interpret

  std::vector<Source> src(in.size());
  int num_gathered = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    src[i].base = in[i].data<float>();
    if (in[i].numel() == 1) {
      src[i].mode = Source::Mode::scalar;
    } else if (in[i].numel() == n && in[i].is_contiguous()) {
      src[i].mode = Source::Mode::direct;
    } else {
      src[i].mode = Source::Mode::gather;
      src[i].layout.emplace(shape, std::array<Strides, 1>{ops::cpu::broadcast_strides(in[i], shape)});
      ++num_gathered;
    }
  }
  const size_t num_temps = prog.code.size();
  const int64_t tiles = (n + kTile - 1) / kTile;
  parallel_for(0, tiles, std::max<int64_t>(1, ops::cpu::kElementwiseGrain / kTile), [&](int64_t t0, int64_t t1) {
    // Scratch: one tile per gathered input and per temp, reused across this chunk's tiles.
    std::vector<float> scratch(static_cast<size_t>((num_gathered + static_cast<int64_t>(num_temps)) * kTile));
    std::vector<Ref> inputs(in.size()), temps(num_temps), args;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t lo = t * kTile, len = std::min(kTile, n - lo);
      fused::load_tile(src, lo, len, kTile, scratch.data(), inputs);
      float* buf = scratch.data() + num_gathered * kTile;
      for (size_t k = 0; k < num_temps; ++k) {
        const fused::Instr& ins = prog.code[k];
        args.clear();
        bool all_broadcast = true;
        for (int a = 0; a < ins.spec->operands; ++a) {
          const fused::Operand& o = ins.args[static_cast<size_t>(a)];
          Ref r = o.kind == fused::Operand::Kind::input  ? inputs[static_cast<size_t>(o.index)]
                  : o.kind == fused::Operand::Kind::temp ? temps[static_cast<size_t>(o.index)]
                                                         : Ref{&o.imm, 0};
          all_broadcast = all_broadcast && r.s == 0;
          args.push_back(r);
        }
        float* o = buf + static_cast<int64_t>(k) * kTile;
        // An instruction on broadcast values only is computed once and stays broadcast.
        fused::run_instr(ins, args, o, all_broadcast ? 1 : len);
        temps[k] = {o, all_broadcast ? 0 : 1};
      }
      for (size_t j = 0; j < prog.outputs.size(); ++j) {
        Ref r = temps[static_cast<size_t>(prog.outputs[j])];
        float* dst = outs[j].data<float>() + lo;
        if (r.s == 1) std::memcpy(dst, r.p, static_cast<size_t>(len) * sizeof(float));
        else std::fill(dst, dst + len, r.p[0]);
      }
    }
  });
  return outs;
}

}  // namespace

void register_fused_kernels(KernelTable& t) { t.add("fused_elementwise", fused_elementwise_kernel); }

}  // namespace kiln::graph
