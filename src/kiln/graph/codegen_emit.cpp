// fused::Program -> C++ source (codegen.h). Every instruction is written with the scalar formula
// the interpreter (kernels_fused.cpp) uses for it: the per-ISA loops of ops/cpu/float_kernels_isa.cpp
// and the branch-free math of ops/cpu/vec_math.h are copied term by term, so compiled without FP
// contraction the generated code gives the interpreter's portable-build bits exactly.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>

#include "kiln/core/error.h"
#include "kiln/graph/codegen.h"

namespace kiln::graph::codegen {

namespace {

using fused::Op;
using fused::Operand;

// ---- helpers the generated code defines when an instruction needs them, in dependency order.
// The vm_* bodies are ops/cpu/vec_math.h verbatim (renamed); keep them in step with it (the
// codegen test compares generated code with the portable kernels bit for bit).
struct Helper {
  const char* name;
  const char* deps;  // space-separated helper names (defined earlier in the table)
  const char* text;
};

constexpr Helper kHelpers[] = {
    {"bits", "", R"(inline float kiln_bits_to_float(int32_t i) {
  float f;
  __builtin_memcpy(&f, &i, 4);
  return f;
}
inline int32_t kiln_float_to_bits(float f) {
  int32_t i;
  __builtin_memcpy(&i, &f, 4);
  return i;
}
)"},
    {"select", "bits", R"(// c ? a : b as a bitwise blend (vectorises where a float ternary would not)
inline float kiln_select(bool c, float a, float b) {
  int32_t m = -static_cast<int32_t>(c);
  return kiln_bits_to_float((kiln_float_to_bits(a) & m) | (kiln_float_to_bits(b) & ~m));
}
)"},
    {"abs", "bits", R"(inline float kiln_abs(float x) { return kiln_bits_to_float(kiln_float_to_bits(x) & 0x7fffffff); }
inline float kiln_with_sign_of(float r, float x) {
  return kiln_bits_to_float((kiln_float_to_bits(r) & 0x7fffffff) | (kiln_float_to_bits(x) & INT32_MIN));
}
)"},
    {"exp", "select", R"(// vec_math.h vm_exp: 2^n * exp(r), degree-6 polynomial
inline float kiln_exp(float x) {
  constexpr float kHi = 88.72283935546875f, kLo = -103.97208404541015625f;
  bool nan = x != x, over = x > kHi, under = x < kLo;
  float xc = kiln_select(over, kHi, x);
  xc = kiln_select(under, kLo, xc);
  xc = kiln_select(nan, 0.0f, xc);
  float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t ni = static_cast<int32_t>(n), n1 = ni >> 1, n2 = ni - n1;
  float res = p * kiln_bits_to_float((n1 + 127) << 23) * kiln_bits_to_float((n2 + 127) << 23);
  res = kiln_select(over, __builtin_inff(), res);
  res = kiln_select(under, 0.0f, res);
  return kiln_select(nan, x, res);
}
)"},
    {"log", "select", R"(// vec_math.h vm_log (Cephes logf)
inline float kiln_log(float x) {
  bool subnormal = x < 1.17549435e-38f;
  float xs = kiln_select(subnormal, x * 8388608.0f, x);
  int32_t bits = kiln_float_to_bits(xs);
  int32_t e = ((bits >> 23) & 0xff) - 126 - 23 * static_cast<int32_t>(subnormal);
  float m = kiln_bits_to_float((bits & 0x007fffff) | 0x3f000000);
  bool small = m < 0.707106781186547524f;
  e -= static_cast<int32_t>(small);
  m = kiln_select(small, m + m, m) - 1.0f;
  float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  float fe = static_cast<float>(e);
  y += fe * -2.12194440e-4f;
  y += -0.5f * z;
  float r = m + y + fe * 0.693359375f;
  r = kiln_select(x == 0.0f, -__builtin_inff(), r);
  r = kiln_select((x < 0.0f) | (x != x), __builtin_nanf(""), r);
  return kiln_select(x == __builtin_inff(), x, r);
}
)"},
    {"tanh", "abs select exp", R"(// vec_math.h vm_tanh: odd polynomial below 0.625, the exp form above
inline float kiln_tanh(float x) {
  float ax = kiln_abs(x);
  float e = kiln_exp(-2.0f * ax);
  float big = (1.0f - e) / (1.0f + e);
  float z = x * x;
  float small = -5.70498872745e-3f;
  small = small * z + 2.06390887954e-2f;
  small = small * z - 5.37397155531e-2f;
  small = small * z + 1.33314422036e-1f;
  small = small * z - 3.33332819422e-1f;
  small = small * z * ax + ax;
  return kiln_with_sign_of(kiln_select(ax < 0.625f, small, big), x);
}
)"},
    {"sigmoid", "exp", R"(inline float kiln_sigmoid(float x) { return 1.0f / (1.0f + kiln_exp(-x)); }
)"},
    {"erf", "abs select exp", R"(// vec_math.h vm_erf: Taylor series below 1, Abramowitz & Stegun 7.1.26 above
inline float kiln_erf(float x) {
  float ax = kiln_abs(x);
  float s = x * x;
  float small = 1.4807192816e-8f;
  small = small * s - 1.6365844691e-7f;
  small = small * s + 1.6462114366e-6f;
  small = small * s - 1.4925650358e-5f;
  small = small * s + 1.2055332982e-4f;
  small = small * s - 8.5483270235e-4f;
  small = small * s + 5.2239776254e-3f;
  small = small * s - 2.6866170645e-2f;
  small = small * s + 1.1283791671e-1f;
  small = small * s - 3.7612638903e-1f;
  small = small * s + 1.1283791671e+0f;
  small = small * ax;
  float t = 1.0f / (1.0f + 0.3275911f * ax);
  float y = 1.061405429f;
  y = y * t - 1.453152027f;
  y = y * t + 1.421413741f;
  y = y * t - 0.284496736f;
  y = y * t + 0.254829592f;
  y = 1.0f - y * t * kiln_exp(-s);
  return kiln_with_sign_of(kiln_select(ax < 1.0f, small, y), x);
}
)"},
    {"opaque", "", R"(// v, hidden from the optimiser, which cannot fold what it cannot see (see where it is used);
// loop-invariant, it is computed once.
inline float kiln_opaque(float v) {
  __asm__("" : "+m"(v));
  return v;
}
)"},
    {"hard_swish", "", R"(inline float kiln_hard_swish(float v) {
  float y = v / 6.f + 0.5f;
  return v * (y < 0.f ? 0.f : (y > 1.f ? 1.f : y));
}
)"},
    {"hard_sigmoid", "", R"(inline float kiln_hard_sigmoid(float v, float alpha, float beta) {
  float y = alpha * v + beta;
  return y < 0.f ? 0.f : (y > 1.f ? 1.f : y);
}
)"},
    {"clamp", "", R"(inline float kiln_clamp(float v, float lo, float hi) {
  float c = v < lo ? lo : v;
  return c > hi ? hi : c;
}
)"},
};

// The driver: shared by every program, it walks the output and hands the program blocks of
// contiguous operands.
constexpr const char* kDriver =
    R"(// Walks the output row by row (rows: the innermost dim). Each block of up to kBlock elements of a
// row goes to `block` with every input contiguous: read in place (stride 1), or from a local
// buffer holding a broadcast value (stride 0, filled once per value) or a strided gather. When
// every input is contiguous in the output's shape, one call covers all n elements.
template <int NI, int NO>
void kiln_drive(void (*block)(int64_t, const float* const*, float* const*), const float* const* in,
                const int64_t* const* st, float* const* out, const int64_t* shape, int64_t rank) {
  constexpr int64_t kBlock = 1024;
  constexpr int kI = NI > 0 ? NI : 1;
  if (rank > 32) __builtin_trap();
  int64_t n = 1;
  for (int64_t d = 0; d < rank; ++d) n *= shape[d];
  if (n == 0) return;
  bool contiguous = true;
  for (int k = 0; k < NI && contiguous; ++k) {
    int64_t expect = 1;
    for (int64_t d = rank; d-- > 0 && contiguous;) {
      contiguous = shape[d] == 1 || st[k][d] == expect;
      expect *= shape[d];
    }
  }
  if (contiguous) {
    block(n, in, out);
    return;
  }
  const int64_t inner = rank > 0 ? shape[rank - 1] : 1;
  const int64_t fill = inner < kBlock ? inner : kBlock;
  float buf[kI][kBlock];
  const float* filled[kI] = {};  // the broadcast element buf[k] holds copies of
  const float* x[kI] = {};
  float* y[NO];
  int64_t idx[32] = {}, off[kI] = {};
  for (int64_t row = 0, rows = n / inner; row < rows; ++row) {
    for (int64_t j = 0; j < inner; j += kBlock) {
      const int64_t len = inner - j < kBlock ? inner - j : kBlock;
      for (int k = 0; k < NI; ++k) {
        const int64_t s = rank > 0 ? st[k][rank - 1] : 0;
        const float* p = in[k] + off[k] + j * s;
        if (s == 1) {
          x[k] = p;
          continue;
        }
        if (s == 0) {
          if (filled[k] != p) {
            for (int64_t i = 0; i < fill; ++i) buf[k][i] = *p;
            filled[k] = p;
          }
        } else {
          for (int64_t i = 0; i < len; ++i) buf[k][i] = p[i * s];
          filled[k] = nullptr;
        }
        x[k] = buf[k];
      }
      for (int o = 0; o < NO; ++o) y[o] = out[o] + row * inner + j;
      block(len, x, y);
    }
    for (int64_t d = rank - 1; d-- > 0;) {  // next row: carry through the outer dims
      for (int k = 0; k < NI; ++k) off[k] += st[k][d];
      if (++idx[d] < shape[d]) break;
      for (int k = 0; k < NI; ++k) off[k] -= shape[d] * st[k][d];
      idx[d] = 0;
    }
  }
}
)";

// The driver of reduction programs: rows of the element shape, each reduced in the order of
// the eager op on the materialised operand.
constexpr const char* kReduceDriver =
    R"(// One row's running reduction, folded block by block in the eager reduction's order: sum and
// mean as ops::sum (16 f32 lanes per block of up to 1024, each block's partial added in f64), max
// and min the first extreme (the first NaN wins), prod left to right.
// KIND: 0 sum, 1 mean, 2 max, 3 min, 4 prod.
template <int KIND>
struct KilnAccumulator {
  double total = 0.0;
  float acc = KIND == 4 ? 1.0f : 0.0f, first_nan = 0.0f;
  bool any = false, nan = false;

  void add(const float* __restrict v, int64_t n) {
    if (KIND == 0 || KIND == 1) {
      float lanes[16] = {};
      int64_t i = 0;
      for (; i + 16 <= n; i += 16)
        for (int q = 0; q < 16; ++q) lanes[q] += v[i + q];
      for (; i < n; ++i) lanes[i & 15] += v[i];
      double part = 0.0;
      for (int q = 0; q < 16; ++q) part += lanes[q];
      total += part;
    } else if (KIND == 4) {
      for (int64_t i = 0; i < n; ++i) acc *= v[i];
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const float x = v[i];
        if (!any || (KIND == 2 ? x > acc : x < acc)) acc = x;
        any = true;
        if (x != x && !nan) {
          nan = true;
          first_nan = x;
        }
      }
    }
  }
  float result(int64_t len) const {
    return KIND == 0   ? static_cast<float>(total)
           : KIND == 1 ? static_cast<float>(total) / static_cast<float>(len)
           : KIND == 4 ? acc
                       : (nan ? first_nan : acc);
  }
};

// Walks the rows (the leading rank - red dims of the element shape). A row's len elements (the
// trailing red dims, flattened) go to `block` in blocks of up to kBlock, every input contiguous
// (read in place, a broadcast value copied out once, or a strided gather); `row` finishes the
// row from its reduced value. Short rows of all-contiguous inputs go to `block` several at once.
template <int NI, int KIND>
void kiln_drive_reduce(void (*block)(int64_t, const float* const*, float* const*),
                       void (*row)(float, float* const*, int64_t), const float* const* in, const int64_t* const* st,
                       float* const* out, const int64_t* shape, int64_t rank, int64_t red) {
  constexpr int64_t kBlock = 1024;
  constexpr int kI = NI > 0 ? NI : 1;
  if (rank > 32 || red < 0 || red > rank) __builtin_trap();
  const int64_t kept = rank - red;
  int64_t rows = 1, len = 1;
  for (int64_t d = 0; d < kept; ++d) rows *= shape[d];
  for (int64_t d = kept; d < rank; ++d) len *= shape[d];
  float values[kBlock];
  float* y[1] = {values};
  const float* x[kI] = {};
  bool contiguous = true;  // every input contiguous over the whole shape
  int mode[kI] = {};       // per input, along a row: 1 contiguous, 0 one broadcast value, 2 gathered
  for (int k = 0; k < NI; ++k) {
    bool along = true, broadcast = true;
    int64_t expect = 1;
    for (int64_t d = rank; d-- > 0;) {
      const bool fits = shape[d] == 1 || st[k][d] == expect;
      if (d >= kept) {
        along = along && fits;
        broadcast = broadcast && (shape[d] == 1 || st[k][d] == 0);
      }
      contiguous = contiguous && fits;
      expect *= shape[d];
    }
    mode[k] = along ? 1 : (broadcast ? 0 : 2);
  }
  if (contiguous && len > 0 && len <= kBlock) {  // whole rows per block: one block each, as ever
    const int64_t per = kBlock / len;
    for (int64_t r = 0; r < rows; r += per) {
      const int64_t count = rows - r < per ? rows - r : per;
      for (int k = 0; k < NI; ++k) x[k] = in[k] + r * len;
      block(count * len, x, y);
      for (int64_t q = 0; q < count; ++q) {
        KilnAccumulator<KIND> acc;
        acc.add(values + q * len, len);
        row(acc.result(len), out, r + q);
      }
    }
    return;
  }
  float buf[kI][kBlock];
  const float* filled[kI] = {};  // the broadcast element buf[k] holds copies of
  int64_t idx[32] = {}, sub[32] = {}, off[kI] = {};
  for (int64_t r = 0; r < rows; ++r) {
    KilnAccumulator<KIND> acc;
    for (int64_t j = 0; j < len; j += kBlock) {
      const int64_t n = len - j < kBlock ? len - j : kBlock;
      for (int k = 0; k < NI; ++k) {
        const float* p = in[k] + off[k];
        if (mode[k] == 1) {
          x[k] = p + j;
          continue;
        }
        if (mode[k] == 0) {
          if (filled[k] != p) {
            for (int64_t i = 0; i < kBlock; ++i) buf[k][i] = *p;
            filled[k] = p;
          }
        } else {  // elements j .. j + n of the row: an odometer over the reduced dims
          int64_t rest = j, o = 0;
          for (int64_t d = rank; d-- > kept;) {
            sub[d] = rest % shape[d];
            rest /= shape[d];
            o += sub[d] * st[k][d];
          }
          for (int64_t i = 0; i < n; ++i) {
            buf[k][i] = p[o];
            for (int64_t d = rank; d-- > kept;) {
              o += st[k][d];
              if (++sub[d] < shape[d]) break;
              o -= shape[d] * st[k][d];
              sub[d] = 0;
            }
          }
          filled[k] = nullptr;
        }
        x[k] = buf[k];
      }
      block(n, x, y);
      acc.add(values, n);
    }
    row(acc.result(len), out, r);
    for (int64_t d = kept; d-- > 0;) {  // next row: carry through the kept dims
      for (int k = 0; k < NI; ++k) off[k] += st[k][d];
      if (++idx[d] < shape[d]) break;
      for (int k = 0; k < NI; ++k) off[k] -= shape[d] * st[k][d];
      idx[d] = 0;
    }
  }
}
)";

void need(const std::string& name, std::set<std::string>& used) {
  if (!used.insert(name).second) return;
  for (const Helper& h : kHelpers) {
    if (name != h.name) continue;
    std::istringstream deps(h.deps);
    for (std::string d; deps >> d;) need(d, used);
    return;
  }
  KILN_ASSERT(false, "codegen: unknown helper '", name, "'");
}

// What the emitter accumulates besides the loop body: the helpers the code calls, and the
// setup lines that run once before the loop.
struct Emit {
  std::set<std::string> used;
  std::ostringstream setup;
  int hidden = 0;

  // A loop-invariant name for `expr` that the optimiser cannot see through (kiln_opaque, called
  // before the loop: inside it, the asm would keep the loop from vectorising).
  std::string hide(const std::string& expr) {
    need("opaque", used);
    std::string name = "c";
    name += std::to_string(hidden++);
    setup << "  const float " << name << " = kiln_opaque(" << expr << ");\n";
    return name;
  }
};

// An f32 constant as a C++ expression of exactly that value.
std::string literal(float v, Emit& e) {
  if (std::isnan(v)) {
    need("bits", e.used);
    uint32_t b;
    std::memcpy(&b, &v, 4);
    char buf[48];
    std::snprintf(buf, sizeof buf, "kiln_bits_to_float(0x%08x)", b);
    return buf;
  }
  if (std::isinf(v)) return v > 0 ? "__builtin_inff()" : "(-__builtin_inff())";
  // clang 14 folds select(-0 < y, -0, y) as if -0 were +0: it never sees a -0 constant.
  if (v == 0 && std::signbit(v)) return e.hide("-0.0f");
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));  // reads back as exactly v
  std::string s = buf;
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  s += "f";
  return v < 0 ? "(" + s + ")" : s;
}

// "t3", "in0". (Not "t" + std::to_string(k): GCC 12 warns falsely on literal + temporary string.)
std::string named(const char* prefix, int64_t i) {
  std::string s = prefix;
  s += std::to_string(i);
  return s;
}

std::string operand_text(const Operand& o) {
  switch (o.kind) {
    case Operand::Kind::input:
      return named("in", o.index);
    case Operand::Kind::temp:
      return named("t", o.index);
    case Operand::Kind::imm:
      return fused::immediate(o.imm);
  }
  return {};
}

// The expression computing one instruction from its operand expressions a (and b) and its
// immediates p1, p2 — the interpreter's formula for it (kernels_fused.cpp run_instr).
std::string expression(const fused::Instr& ins, const std::vector<std::string>& v, std::set<std::string>& used) {
  const std::string& a = v[0];
  auto at = [&](size_t i) { return v.at(i); };
  auto call = [&](const char* helper, const std::string& args) {
    need(helper, used);
    return std::string("kiln_") + helper + "(" + args + ")";
  };
  switch (ins.spec->op) {
    case Op::add:
      return a + " + " + at(1);
    case Op::sub:
      return a + " - " + at(1);
    case Op::mul:
      return a + " * " + at(1);
    case Op::div:
      return a + " / " + at(1);
    case Op::pow:
      return "__builtin_powf(" + a + ", " + at(1) + ")";
    case Op::maximum: {
      const std::string& b = at(1);
      return a + " != " + a + " ? " + a + " : (" + a + " > " + b + " || " + b + " != " + b + " ? " + a + " : " + b +
             ")";
    }
    case Op::minimum: {
      const std::string& b = at(1);
      return a + " != " + a + " ? " + a + " : (" + a + " < " + b + " || " + b + " != " + b + " ? " + a + " : " + b +
             ")";
    }
    case Op::prelu:
      return a + " < 0.f ? " + at(1) + " * " + a + " : " + a;
    case Op::neg:
      return "-" + a;
    case Op::abs:
      return a + " < 0 ? -" + a + " : " + a;
    case Op::exp:
      return call("exp", a);
    case Op::log:
      return call("log", a);
    case Op::sqrt:
      return "__builtin_sqrtf(" + a + ")";
    case Op::rsqrt:
      return "1.0f / __builtin_sqrtf(" + a + ")";
    case Op::tanh:
      return call("tanh", a);
    case Op::sigmoid:
      return call("sigmoid", a);
    case Op::relu:
      return a + " > 0 ? " + a + " : 0.0f";
    case Op::gelu:
      return "0.5f * " + a + " * (1.0f + " + call("erf", a + " * 0.70710678118654752f") + ")";
    case Op::gelu_tanh:
      // vec_math.h vm_gelu_tanh: x * sigmoid(2u) = x / (1 + exp(-2u))
      return a + " / (1.0f + " +
             call("exp", "-1.5957691216057308f * (" + a + " + 0.044715f * " + a + " * " + a + " * " + a + ")") + ")";
    case Op::silu:
      return a + " * " + call("sigmoid", a);
    case Op::erf:
      return "__builtin_erff(" + a + ")";  // libm, as the interpreter (not vm_erf)
    case Op::reciprocal:
      return "1.f / " + a;
    case Op::floor:
      return "__builtin_floorf(" + a + ")";
    case Op::ceil:
      return "__builtin_ceilf(" + a + ")";
    case Op::round:
      return "__builtin_nearbyintf(" + a + ")";
    case Op::sin:
      return "__builtin_sinf(" + a + ")";
    case Op::cos:
      return "__builtin_cosf(" + a + ")";
    case Op::softplus:
      return "(" + a + " > 0.f ? " + a + " : 0.f) + __builtin_log1pf(__builtin_expf(-__builtin_fabsf(" + a + ")))";
    case Op::softsign:
      return a + " / (1.f + __builtin_fabsf(" + a + "))";
    case Op::hard_swish:
      return call("hard_swish", a);
    case Op::sign:
      return a + " > 0.f ? 1.f : (" + a + " < 0.f ? -1.f : " + a + ")";
    case Op::leaky_relu:
      return a + " < 0.f ? " + at(1) + " * " + a + " : " + a;
    case Op::elu:
      return a + " < 0.f ? " + at(1) + " * __builtin_expm1f(" + a + ") : " + a;
    case Op::hard_sigmoid:
      return call("hard_sigmoid", a + ", " + at(1) + ", " + at(2));
    case Op::selu:
      return a + " <= 0.f ? " + at(2) + " * " + at(1) + " * __builtin_expm1f(" + a + ") : " + at(2) + " * " + a;
    case Op::clamp:
      return call("clamp", a + ", " + at(1) + ", " + at(2));
    case Op::reduce_sum:
    case Op::reduce_mean:
    case Op::reduce_max:
    case Op::reduce_min:
    case Op::reduce_prod:
      break;  // not an expression: the reduction driver folds the operand
  }
  KILN_ASSERT(false, "codegen: no formula for '", ins.spec->name, "'");
  return {};
}

}  // namespace

std::string content_hash(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::vector<std::string> program_lines(const fused::Program& prog) {
  std::vector<std::string> lines;
  for (size_t k = 0; k < prog.code.size(); ++k) {
    std::string line = named("t", static_cast<int64_t>(k));
    line += " = ";
    line += prog.code[k].spec->name;
    for (const Operand& o : prog.code[k].args) {
      line += ' ';
      line += operand_text(o);
    }
    lines.push_back(std::move(line));
  }
  std::string outs = "outputs";
  for (int j : prog.outputs) {
    outs += ' ';
    outs += named("t", j);
  }
  lines.push_back(std::move(outs));
  return lines;
}

std::string program_text(const fused::Program& prog) {
  std::string text;
  for (const std::string& line : program_lines(prog)) text += line + "\n";
  return text;
}

std::string program_hash(const fused::Program& prog) { return content_hash(program_text(prog)); }

std::string symbol_name(const fused::Program& prog) { return "kiln_fused_" + program_hash(prog); }

int num_inputs_read(const fused::Program& prog) {
  int n = 0;
  for (const fused::Instr& ins : prog.code)
    for (const Operand& o : ins.args)
      if (o.kind == Operand::Kind::input) n = std::max(n, o.index + 1);
  return n;
}

namespace {

// Instructions [begin, end) as C++ statements: "const float t<k> = <expression>;  // <line>" into
// `body` (indent: `indent`), or into e.setup when the instruction reads immediates only. Operands
// t<j> of earlier instructions and in<i> (as x<i>) are names in scope; `constant` marks the
// instructions computed from immediates only.
void emit_instructions(const fused::Program& prog, size_t begin, size_t end, const std::vector<std::string>& lines,
                       const char* indent, Emit& e, std::ostream& body, std::vector<bool>& constant) {
  for (size_t k = begin; k < end; ++k) {
    const fused::Instr& ins = prog.code[k];
    bool all_constant = true;
    for (int a = 0; a < ins.spec->operands; ++a) {
      const Operand& o = ins.args[static_cast<size_t>(a)];
      all_constant = all_constant && (o.kind == Operand::Kind::imm ||
                                      (o.kind == Operand::Kind::temp && constant[static_cast<size_t>(o.index)]));
    }
    constant[k] = all_constant;
    std::vector<std::string> v;
    for (size_t a = 0; a < ins.args.size(); ++a) {
      const Operand& o = ins.args[a];
      if (o.kind == Operand::Kind::input) {
        v.push_back(named("x", o.index));
      } else if (o.kind == Operand::Kind::temp) {
        v.push_back(named("t", o.index));
      } else {
        const int hidden_before = e.hidden;
        v.push_back(literal(o.imm, e));
        // Immediates the optimiser must not see: the operands of an instruction on immediates
        // only (folded at compile time, libm functions could round unlike glibc's), and pow's
        // exponent (GCC rewrites powf(x, 2) as x * x, which glibc's powf does not always match).
        const bool value_operand = static_cast<int>(a) < ins.spec->operands;
        if (value_operand && (all_constant || ins.spec->op == Op::pow) && e.hidden == hidden_before)
          v.back() = e.hide(v.back());
      }
    }
    // An instruction on immediates only runs once, before the loop.
    std::ostream& to = all_constant ? static_cast<std::ostream&>(e.setup) : body;
    to << (all_constant ? "  " : indent) << "const float t" << k << " = " << expression(ins, v, e.used) << ";  // "
       << lines[k] << "\n";
  }
}

std::string emit_reduction_source(const fused::Program& prog);

}  // namespace

std::string emit_source(const fused::Program& prog) {
  KILN_CHECK(!prog.code.empty() && !prog.outputs.empty(), "codegen: a program needs instructions and outputs");
  if (prog.is_reduction()) return emit_reduction_source(prog);
  const int ni = num_inputs_read(prog);
  const int no = static_cast<int>(prog.outputs.size());
  Emit e;
  const std::vector<std::string> lines = program_lines(prog);

  // The loop body first: it decides which helpers the file needs.
  std::ostringstream body;
  std::vector<bool> loaded(static_cast<size_t>(ni), false);
  for (const fused::Instr& ins : prog.code)
    for (const Operand& o : ins.args)
      if (o.kind == Operand::Kind::input) loaded[static_cast<size_t>(o.index)] = true;
  for (int k = 0; k < ni; ++k)
    if (loaded[static_cast<size_t>(k)]) body << "    const float x" << k << " = in" << k << "[i];\n";
  std::vector<bool> constant(prog.code.size(), false);  // computed from immediates only
  emit_instructions(prog, 0, prog.code.size(), lines, "    ", e, body, constant);
  for (int j = 0; j < no; ++j) body << "    out" << j << "[i] = t" << prog.outputs[static_cast<size_t>(j)] << ";\n";

  std::ostringstream src;
  src << "// Generated by Kiln's code generator (src/kiln/graph/codegen_emit.cpp) from the fused program\n";
  for (const std::string& line : lines) src << "//   " << line << "\n";
  src << "// Compiled with -ffp-contract=off: every operation rounds as written, on every machine.\n"
         "#include <stdint.h>\n\nnamespace {\n\n";
  for (const Helper& h : kHelpers)
    if (e.used.count(h.name)) src << h.text << "\n";
  src << kDriver << "\n";
  src << "// The program over n elements, every operand contiguous.\n"
         "void kiln_block(int64_t n, const float* const* x, float* const* y) {\n";
  if (ni == 0) src << "  (void)x;\n";
  for (int k = 0; k < ni; ++k)
    if (loaded[static_cast<size_t>(k)]) src << "  const float* __restrict in" << k << " = x[" << k << "];\n";
  for (int j = 0; j < no; ++j) src << "  float* __restrict out" << j << " = y[" << j << "];\n";
  src << e.setup.str();
  src << "  for (int64_t i = 0; i < n; ++i) {\n" << body.str() << "  }\n}\n\n}  // namespace\n\n";
  src << "extern \"C\" void " << symbol_name(prog)
      << "(const float* const* inputs, const int64_t* const* input_strides, float* const* outputs,\n"
      << "    const int64_t* out_shape, int64_t rank) {\n"
      << "  kiln_drive<" << ni << ", " << no << ">(kiln_block, inputs, input_strides, outputs, out_shape, rank);\n"
      << "}\n";
  return src.str();
}

namespace {

// A reduction program (fused_program.h): kiln_block computes the reduce operand over a block of
// a row (the instructions before the reduction), kiln_row the epilogue of one row, and the
// driver (kReduceDriver) walks the rows and folds the blocks.
std::string emit_reduction_source(const fused::Program& prog) {
  const int ni = num_inputs_read(prog);
  const int no = static_cast<int>(prog.outputs.size());
  const size_t at = static_cast<size_t>(prog.reduce_at);
  const Operand& operand = prog.code[at].args[0];
  Emit e;
  const std::vector<std::string> lines = program_lines(prog);

  // The element loop: the instructions before the reduction, then the operand to values[i].
  std::ostringstream body;
  std::vector<bool> loaded(static_cast<size_t>(ni), false);
  for (size_t k = 0; k <= at; ++k)
    for (const Operand& o : prog.code[k].args)
      if (o.kind == Operand::Kind::input) loaded[static_cast<size_t>(o.index)] = true;
  for (int k = 0; k < ni; ++k)
    if (loaded[static_cast<size_t>(k)]) body << "    const float x" << k << " = in" << k << "[i];\n";
  std::vector<bool> constant(prog.code.size(), false);
  emit_instructions(prog, 0, at, lines, "    ", e, body, constant);
  std::string value = operand.kind == Operand::Kind::input  ? named("x", operand.index)
                      : operand.kind == Operand::Kind::temp ? named("t", operand.index)
                                                            : literal(operand.imm, e);
  body << "    values[i] = " << value << ";  // " << lines[at] << "\n";
  const std::string block_setup = e.setup.str();
  e.setup.str("");

  // The epilogue: one row's reduced value t<at> -> the row's outputs.
  std::ostringstream epilogue;
  emit_instructions(prog, at + 1, prog.code.size(), lines, "  ", e, epilogue, constant);
  for (int j = 0; j < no; ++j)
    epilogue << "  y[" << j << "][row] = t" << prog.outputs[static_cast<size_t>(j)] << ";\n";

  static constexpr const char* kKinds[] = {"0", "1", "2", "3", "4"};  // sum mean max min prod
  const int kind = static_cast<int>(prog.reduce_op()) - static_cast<int>(Op::reduce_sum);
  std::ostringstream src;
  src << "// Generated by Kiln's code generator (src/kiln/graph/codegen_emit.cpp) from the fused reduction program\n";
  for (const std::string& line : lines) src << "//   " << line << "\n";
  src << "// Compiled with -ffp-contract=off: every operation rounds as written, on every machine.\n"
         "#include <stdint.h>\n\nnamespace {\n\n";
  for (const Helper& h : kHelpers)
    if (e.used.count(h.name)) src << h.text << "\n";
  src << kReduceDriver << "\n";
  src << "// The reduce operand over n elements of a row, every input contiguous.\n"
         "void kiln_block(int64_t n, const float* const* x, float* const* y) {\n";
  if (ni == 0) src << "  (void)x;\n";
  for (int k = 0; k < ni; ++k)
    if (loaded[static_cast<size_t>(k)]) src << "  const float* __restrict in" << k << " = x[" << k << "];\n";
  src << "  float* __restrict values = y[0];\n" << block_setup;
  src << "  for (int64_t i = 0; i < n; ++i) {\n" << body.str() << "  }\n}\n\n";
  src << "// The epilogue of one row: its reduced value t" << at << " -> its outputs.\n"
      << "void kiln_row(float t" << at << ", float* const* y, int64_t row) {\n"
      << e.setup.str() << epilogue.str() << "}\n\n}  // namespace\n\n";
  src << "extern \"C\" void " << symbol_name(prog)
      << "(const float* const* inputs, const int64_t* const* input_strides, float* const* outputs,\n"
      << "    const int64_t* shape, int64_t rank, int64_t reduced_rank) {\n"
      << "  kiln_drive_reduce<" << ni << ", " << kKinds[kind]
      << ">(kiln_block, kiln_row, inputs, input_strides, outputs, shape, rank, reduced_rank);\n"
      << "}\n";
  return src.str();
}

}  // namespace

}  // namespace kiln::graph::codegen
