// The interpreter of reduction programs (fused_program.h): for each output row, the element
// instructions run over the row in blocks of kTile elements (the block sizes of ops::sum, so the
// f64 block partials are the eager ones), each block is folded into the row's accumulator, and
// the epilogue runs over the reduced values of a chunk of rows at once. It is the oracle of the
// generated reduction kernels (codegen_emit.cpp) and the fallback when nothing was compiled.
#include <cmath>
#include <cstring>

#include "kiln/core/thread_pool.h"
#include "kiln/graph/codegen.h"
#include "kiln/graph/fused_program.h"
#include "kiln/graph/kernels.h"
#include "kiln/ops/cpu/elementwise_loops.h"
#include "kiln/ops/cpu/float_kernels.h"

namespace kiln::graph::fused {

namespace {

constexpr int64_t kTile = 1024;            // = the block of float_kernels().sum: keep them equal
constexpr int64_t kReduceGrain = 1 << 14;  // elements per parallel task, as the eager reductions

// The running reduction of one row, folded block by block in the eager ops' order.
struct Accumulator {
  Op op;
  double total = 0.0;     // sum, mean: f64 sum of the blocks' f64 partials
  float value = 0.f;      // max, min: the first extreme so far; prod: the running product
  bool any = false;       // max, min: value holds an element
  bool nan = false;       // max, min: a NaN was seen; `first_nan` is the first one
  float first_nan = 0.f;

  explicit Accumulator(Op o) : op(o), value(o == Op::reduce_prod ? 1.f : 0.f) {}

  void add(const float* x, int64_t n) {
    switch (op) {
      case Op::reduce_sum:
      case Op::reduce_mean:
        // One call per block of <= kTile elements returns exactly that block's f64 partial.
        total += ops::cpu::float_kernels().sum(x, n);
        return;
      case Op::reduce_prod:
        for (int64_t i = 0; i < n; ++i) value *= x[i];
        return;
      default: {
        const bool is_max = op == Op::reduce_max;
        int64_t i = 0;
        if (!any && n > 0) value = x[i++], any = true, track_nan(value);
        for (; i < n; ++i) {
          const float v = x[i];
          if (is_max ? v > value : v < value) value = v;
          track_nan(v);
        }
        return;
      }
    }
  }
  void track_nan(float v) {
    if (v != v && !nan) nan = true, first_nan = v;
  }
  float result(int64_t len) const {
    switch (op) {
      case Op::reduce_sum: return static_cast<float>(total);
      case Op::reduce_mean: return static_cast<float>(total) / static_cast<float>(len);  // as ops::mean
      case Op::reduce_prod: return value;
      default: return nan ? first_nan : value;
    }
  }
};


}  // namespace

std::vector<Tensor> run_reduction(const Node& node, const Program& prog, const std::vector<Tensor>& in) {
  Shape shape;  // the element shape
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i].defined()) kernel_error(node, detail::concat("input ", i, " is missing"));
    if (in[i].dtype() != DType::f32)
      kernel_error(node, detail::concat("input ", i, " is ", dtype_name(in[i].dtype()), "; fused programs are f32"));
    shape = broadcast_shapes(shape, in[i].shape(), "fused_elementwise");
  }
  if (static_cast<int64_t>(shape.size()) > prog.rank)
    kernel_error(node, detail::concat("inputs broadcast to ", shape_str(shape), ", more than rank ", prog.rank));
  shape.insert(shape.begin(), static_cast<size_t>(prog.rank) - shape.size(), 1);
  const Shape out_shape = reduced_shape(prog, shape);
  std::vector<Tensor> outs;
  for (size_t j = 0; j < prog.outputs.size(); ++j) outs.push_back(Tensor::empty(out_shape, DType::f32));
  const size_t kept_rank = shape.size() - static_cast<size_t>(prog.reduce_axes);
  const int64_t rows = numel(Shape(shape.begin(), shape.begin() + static_cast<std::ptrdiff_t>(kept_rank)));
  const int64_t len = numel(Shape(shape.begin() + static_cast<std::ptrdiff_t>(kept_rank), shape.end()));
  if (rows == 0) return outs;
  const Op rop = prog.reduce_op();
  if (len == 0 && rop != Op::reduce_sum && rop != Op::reduce_prod)
    kernel_error(node, detail::concat(prog.code[static_cast<size_t>(prog.reduce_at)].spec->name,
                                      ": cannot reduce over an empty dimension of ", shape_str(shape)));
  if (codegen::run_generated(prog, in, outs)) return outs;  // compiled C++ (codegen.h); else interpret

  std::vector<Source> src(in.size());
  int num_gathered = 0;
  const int64_t n = rows * len;
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
  const size_t num_pre = static_cast<size_t>(prog.reduce_at), num_temps = prog.code.size();
  const Instr& reduce = prog.code[num_pre];
  parallel_for(0, rows, std::max<int64_t>(1, kReduceGrain / std::max<int64_t>(len, 1)), [&](int64_t r0, int64_t r1) {
    const int64_t nr = r1 - r0;
    // Scratch: a tile per gathered input and per element temp, one more for a broadcast operand;
    // then one value per row of the chunk for the reduced value and each epilogue temp.
    std::vector<float> scratch(static_cast<size_t>((num_gathered + static_cast<int64_t>(num_pre) + 1) * kTile));
    std::vector<float> row_values(static_cast<size_t>(static_cast<int64_t>(num_temps - num_pre) * nr));
    std::vector<Ref> inputs(in.size()), temps(num_temps), args;
    auto operand = [&](const Operand& o) {
      return o.kind == Operand::Kind::input  ? inputs[static_cast<size_t>(o.index)]
             : o.kind == Operand::Kind::temp ? temps[static_cast<size_t>(o.index)]
                                             : Ref{&o.imm, 0};
    };
    // The reduce operand over elements [lo, lo + count) of the element shape (count <= kTile).
    auto evaluate = [&](int64_t lo, int64_t count) {
      load_tile(src, lo, count, kTile, scratch.data(), inputs);
      float* buf = scratch.data();
      for (const Source& s : src) buf += s.mode == Source::Mode::gather ? kTile : 0;
      for (size_t k = 0; k < num_pre; ++k) {
        const Instr& ins = prog.code[k];
        args.clear();
        bool all_broadcast = true;
        for (int a = 0; a < ins.spec->operands; ++a) {
          args.push_back(operand(ins.args[static_cast<size_t>(a)]));
          all_broadcast = all_broadcast && args.back().s == 0;
        }
        float* o = buf + static_cast<int64_t>(k) * kTile;
        run_instr(ins, args, o, all_broadcast ? 1 : count);
        temps[k] = {o, all_broadcast ? 0 : 1};
      }
      Ref x = operand(reduce.args[0]);
      if (x.s == 0) {  // a broadcast value: reduce `count` copies of it, as the eager op would
        float* o = buf + static_cast<int64_t>(num_pre) * kTile;
        std::fill(o, o + count, x.p[0]);
        x = {o, 1};
      }
      return x.p;
    };
    float* reduced = row_values.data();
    if (len == 0) {
      std::fill(reduced, reduced + nr, Accumulator(reduce.spec->op).result(0));
    } else if (len <= kTile) {
      // Short rows: a tile holds whole rows (one block each, as in the eager sum).
      const int64_t per_tile = kTile / len;
      for (int64_t r = r0; r < r1; r += per_tile) {
        const int64_t count = std::min(per_tile, r1 - r);
        const float* x = evaluate(r * len, count * len);
        for (int64_t q = 0; q < count; ++q) {
          Accumulator acc(reduce.spec->op);
          acc.add(x + q * len, len);
          reduced[r - r0 + q] = acc.result(len);
        }
      }
    } else {
      for (int64_t r = r0; r < r1; ++r) {
        Accumulator acc(reduce.spec->op);
        for (int64_t j = 0; j < len; j += kTile) {
          const int64_t count = std::min(kTile, len - j);
          acc.add(evaluate(r * len + j, count), count);
        }
        reduced[r - r0] = acc.result(len);
      }
    }
    // The epilogue over the chunk's rows: temps t<reduce_at + m> live at row_values + m * nr.
    temps[num_pre] = {reduced, 1};
    for (size_t k = num_pre + 1; k < num_temps; ++k) {
      const Instr& ins = prog.code[k];
      args.clear();
      bool all_broadcast = true;
      for (int a = 0; a < ins.spec->operands; ++a) {
        args.push_back(operand(ins.args[static_cast<size_t>(a)]));
        all_broadcast = all_broadcast && args.back().s == 0;
      }
      float* o = row_values.data() + static_cast<int64_t>(k - num_pre) * nr;
      run_instr(ins, args, o, all_broadcast ? 1 : nr);
      temps[k] = {o, all_broadcast ? 0 : 1};
    }
    for (size_t j = 0; j < prog.outputs.size(); ++j) {
      Ref t = temps[static_cast<size_t>(prog.outputs[j])];
      float* dst = outs[j].data<float>() + r0;
      if (t.s == 1) std::memcpy(dst, t.p, static_cast<size_t>(nr) * sizeof(float));
      else std::fill(dst, dst + nr, t.p[0]);
    }
  });
  return outs;
}

}  // namespace kiln::graph::fused
