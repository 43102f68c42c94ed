// Kiln's f32 GEMM driver: BLIS-style cache blocking around the micro-kernels of
// gemm_kernels_isa.cpp. Loop nest per GEMM (jc: NC columns of B, pc: KC of depth, ic: MC rows of
// A, then NR x MR micro-tiles): a packed kc x nc block of B stays in L3/L2 while packed mc x kc
// blocks of A stream through L2 and one kc x NR micro-panel of B sits in L1.
// Threads split work three ways: whole GEMMs of a batch; rows of M with one shared packed B
// (packed cooperatively, separated by barriers); or columns of N with private B blocks.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "kiln/core/error.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/float_kernels.h"
#include "kiln/ops/cpu/gemm.h"
#include "kiln/ops/cpu/gemm_kernel.h"
#include "kiln/ops/cpu/gemm_tuning.h"

namespace kiln::ops::cpu {

namespace portable { extern const GemmKernelSet kGemmKernels; }
namespace avx2 { extern const GemmKernelSet kGemmKernels; }
namespace avx512 { extern const GemmKernelSet kGemmKernels; }

const GemmKernelSet* gemm_kernels_for(std::string_view isa) {
  return pick_isa(isa, portable::kGemmKernels, avx2::kGemmKernels, avx512::kGemmKernels);
}

const GemmKernelSet& gemm_kernels() {
  // Follow the elementwise kernels' choice so KILN_ISA forces both the same way.
  static const GemmKernelSet& ks = *gemm_kernels_for(simd_level());
  return ks;
}

namespace {

// A 64-byte aligned buffer that only grows: packing buffers are reused across calls, so the
// hot path never allocates after warm-up.
class PackBuffer {
 public:
  float* get(int64_t floats) {
    if (floats > cap_) {
      size_t bytes = (static_cast<size_t>(floats) * sizeof(float) + 63) / 64 * 64;
      ptr_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
      if (!ptr_) throw std::bad_alloc();
      cap_ = floats;
    }
    return ptr_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> ptr_;
  int64_t cap_ = 0;
};

thread_local PackBuffer t_pack_a, t_pack_b;

struct Job {
  const GemmMicroKernel& mk;
  const GemmConfig& cfg;
  int64_t M, N, K;
  MatrixView a, b;
  OutputView c;
  const GemmEpilogue& ep;
  const PackedB* packed_b = nullptr;  // B already packed (then `b` is unused by the blocked path)
};

inline bool is_gelu(GemmActivation act) {
  return act == GemmActivation::gelu || act == GemmActivation::gelu_tanh;
}

// Applies GELU (and then the residual) to a finished tile: GELU needs erf/tanh, which the
// micro-kernels do not carry, so it runs here while the tile is still in L1.
void gelu_tile(const GemmEpilogue& ep, float* c, int64_t ldc, const float* res, int64_t ldr, int64_t rows,
               int64_t cols) {
  const auto& fk = float_kernels();
  UnaryOp op = ep.act == GemmActivation::gelu ? UnaryOp::gelu : UnaryOp::gelu_tanh;
  for (int64_t i = 0; i < rows; ++i) {
    fk.unary(op, c + i * ldc, c + i * ldc, cols);
    if (res) fk.binary(BinaryOp::add, c + i * ldc, c + i * ldc, 1, res + i * ldr, 1, cols);
  }
}

// One MR x NR tile of C at (row, col) of batch entry `bi`, given packed panels.
void run_tile(const Job& j, int64_t bi, int64_t row, int64_t col, int64_t mv, int64_t nv, int64_t kc,
              const float* ap, const float* bp, bool load_c, bool final) {
  const int MR = j.mk.mr, NR = j.mk.nr;
  float* c = j.c.data + bi * j.c.batch_stride + row * j.c.row_stride + col;
  const int64_t ldc = j.c.row_stride;
  // GELU (and the residual after it) is applied by gemm_block once the whole row block is done.
  const bool gelu = final && is_gelu(j.ep.act);
  TileArgs t{load_c, final, nullptr, j.ep.bias_per_row, final && j.ep.act == GemmActivation::relu, nullptr, ldc};
  const float* res = nullptr;
  if (final) {
    if (j.ep.bias) t.bias = j.ep.bias + (j.ep.bias_per_row ? row : col);
    if (j.ep.residual) res = j.ep.residual + bi * j.c.batch_stride + row * j.c.row_stride + col;
    if (!gelu) t.residual = res;
  }
  if (mv == MR && nv == NR) {
    j.mk.run(kc, ap, bp, c, ldc, t);
    return;
  }
  // Edge tile: run the full-size kernel on a scratch tile, copy the valid part back.
  alignas(64) float tile[16 * 64];
  alignas(64) float bias_pad[64];
  alignas(64) float res_pad[16 * 64];
  if (load_c)
    for (int64_t i = 0; i < mv; ++i) std::memcpy(tile + i * NR, c + i * ldc, nv * sizeof(float));
  if (t.bias) {
    int64_t n = j.ep.bias_per_row ? mv : nv;
    std::memcpy(bias_pad, t.bias, n * sizeof(float));
    std::fill(bias_pad + n, bias_pad + 64, 0.0f);
    t.bias = bias_pad;
  }
  if (t.residual) {
    for (int64_t i = 0; i < mv; ++i) std::memcpy(res_pad + i * NR, t.residual + i * ldc, nv * sizeof(float));
    t.residual = res_pad;
    t.ldr = NR;
  }
  j.mk.run(kc, ap, bp, tile, NR, t);
  for (int64_t i = 0; i < mv; ++i) std::memcpy(c + i * ldc, tile + i * NR, nv * sizeof(float));
}

// The blocked loop nest for rows [m_lo, m_hi) and columns [n0, n1) of batch entry bi. With a
// team (nt > 1) every member calls this with its own rows and the same columns, and the packed
// B block `bbuf` is shared: each member packs a slice of its panels, then all wait.
void gemm_block(const Job& j, int64_t bi, int64_t m_lo, int64_t m_hi, int64_t n0, int64_t n1, int tid, int nt,
                float* bbuf) {
  const int MR = j.mk.mr, NR = j.mk.nr;
  const float* A = static_cast<const float*>(j.a.data) + bi * j.a.batch_stride;
  const float* B = static_cast<const float*>(j.b.data) + bi * j.b.batch_stride;
  const int64_t MC = j.cfg.mc, KC = j.cfg.kc, NC = j.cfg.nc;
  // +16: the vectorised A packing may write up to 8 floats past its last panel.
  float* abuf = t_pack_a.get(((std::min(MC, std::max<int64_t>(m_hi - m_lo, 1)) + MR - 1) / MR) * MR * KC + 16);
  for (int64_t jc = n0; jc < n1; jc += NC) {
    const int64_t nc = std::min(NC, n1 - jc);
    const int64_t npanels = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < j.K; pc += KC) {
      const int64_t kc = std::min(KC, j.K - pc);
      const bool load_c = pc > 0 || j.ep.accumulate;
      const bool final = pc + kc == j.K;
      const float* bblock = bbuf;
      if (j.packed_b) {
        bblock = j.packed_b->data.get() + pc * j.packed_b->npad + jc * kc;  // jc is a whole number of panels
      } else {
        const int64_t per = (npanels + nt - 1) / nt;
        const int64_t p0 = std::min(npanels, tid * per), p1 = std::min(npanels, p0 + per);
        if (p0 < p1)
          j.mk.pack_b(B + pc * j.b.row_stride + jc * j.b.col_stride, j.b.row_stride, j.b.col_stride, kc, nc, p0, p1,
                      bbuf);
        if (nt > 1) {
#pragma omp barrier
        }
      }
      for (int64_t ic = m_lo; ic < m_hi; ic += MC) {
        const int64_t mc = std::min(MC, m_hi - ic);
        j.mk.pack_a(A + ic * j.a.row_stride + pc * j.a.col_stride, j.a.row_stride, j.a.col_stride, mc, kc,
                    j.ep.alpha, abuf);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const float* bp = bblock + (jr / NR) * kc * NR;
          const int64_t nv = std::min<int64_t>(NR, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += MR) {
            // Fetch the next tile's C rows while this tile computes: they were last touched a
            // whole K block ago and would otherwise stall the kernel's first loads / stores.
            if (ir + MR < mc) {
              float* next = j.c.data + bi * j.c.batch_stride + (ic + ir + MR) * j.c.row_stride + jc + jr;
              for (int64_t i = 0; i < std::min<int64_t>(MR, mc - ir - MR); ++i) {
                __builtin_prefetch(next + i * j.c.row_stride, 1);
                __builtin_prefetch(next + i * j.c.row_stride + nv - 1, 1);
              }
            }
            run_tile(j, bi, ic + ir, jc + jr, std::min<int64_t>(MR, mc - ir), nv, kc, abuf + (ir / MR) * kc * MR, bp,
                     load_c, final);
          }
        }
        // GELU over whole rows of the finished mc x nc block while it is still in cache: one
        // call per row instead of one per MR x NR tile row, whose fixed cost (constants, tail)
        // used to exceed the arithmetic.
        if (final && is_gelu(j.ep.act)) {
          float* c = j.c.data + bi * j.c.batch_stride + ic * j.c.row_stride + jc;
          const float* res =
              j.ep.residual ? j.ep.residual + bi * j.c.batch_stride + ic * j.c.row_stride + jc : nullptr;
          gelu_tile(j.ep, c, j.c.row_stride, res, j.c.row_stride, mc, nc);
        }
      }
      if (nt > 1 && !j.packed_b) {
#pragma omp barrier
      }
    }
  }
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// K == 0: the product is empty, only the epilogue remains.
void epilogue_only(int64_t batch, int64_t M, int64_t N, OutputView c, const GemmEpilogue& ep) {
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t i = 0; i < M; ++i) {
      float* row = c.data + bi * c.batch_stride + i * c.row_stride;
      const float* res = ep.residual ? ep.residual + bi * c.batch_stride + i * c.row_stride : nullptr;
      for (int64_t jj = 0; jj < N; ++jj) {
        float v = ep.accumulate ? row[jj] : 0.0f;
        if (ep.bias) v += ep.bias_per_row ? ep.bias[i] : ep.bias[jj];
        if (ep.act == GemmActivation::relu) v = std::max(v, 0.0f);
        row[jj] = v;
      }
      if (is_gelu(ep.act))
        float_kernels().unary(ep.act == GemmActivation::gelu ? UnaryOp::gelu : UnaryOp::gelu_tanh, row, row, N);
      if (res)
        for (int64_t jj = 0; jj < N; ++jj) row[jj] += res[jj];
    }
}

// The epilogue after the small-M kernels, which leave raw sums: bias, activation, residual.
void finish_rows(const GemmEpilogue& ep, float* c, int64_t ldc, const float* res, int64_t rows, int64_t j0,
                 int64_t j1) {
  const auto& fk = float_kernels();
  for (int64_t i = 0; i < rows; ++i) {
    float* row = c + i * ldc;
    if (ep.bias) {
      if (ep.bias_per_row)
        for (int64_t jj = j0; jj < j1; ++jj) row[jj] += ep.bias[i];
      else
        fk.binary(BinaryOp::add, row + j0, row + j0, 1, ep.bias + j0, 1, j1 - j0);
    }
    if (ep.act == GemmActivation::relu) fk.unary(UnaryOp::relu, row + j0, row + j0, j1 - j0);
    if (is_gelu(ep.act))
      fk.unary(ep.act == GemmActivation::gelu ? UnaryOp::gelu : UnaryOp::gelu_tanh, row + j0, row + j0, j1 - j0);
    if (res) fk.binary(BinaryOp::add, row + j0, row + j0, 1, res + i * ldc + j0, 1, j1 - j0);
  }
}

// A few rows of A: no packing, columns split across threads. Returns false when the operands'
// layout suits neither small kernel (the packed path then handles it).
bool try_small_m(const GemmKernelSet& ks, int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a,
                 MatrixView b, OutputView c, const GemmEpilogue& ep) {
  if (M > kSmallM) return false;
  const bool nn = b.col_stride == 1;
  const bool nt = !nn && b.row_stride == 1 && a.col_stride == 1;
  if (!nn && !nt) return false;
  const int64_t grain = std::max<int64_t>(64, (int64_t{1} << 15) / std::max<int64_t>(M * K, 1));
  for (int64_t bi = 0; bi < batch; ++bi) {
    const float* A = static_cast<const float*>(a.data) + bi * a.batch_stride;
    const float* B = static_cast<const float*>(b.data) + bi * b.batch_stride;
    float* C = c.data + bi * c.batch_stride;
    const float* R = ep.residual ? ep.residual + bi * c.batch_stride : nullptr;
    parallel_for(0, N, grain, [&](int64_t j0, int64_t j1) {
      if (nn)
        ks.small_nn(M, j1 - j0, K, A, a.row_stride, a.col_stride, ep.alpha, B + j0, b.row_stride, C + j0, c.row_stride,
                    ep.accumulate);
      else
        ks.small_nt(M, j1 - j0, K, A, a.row_stride, ep.alpha, B + j0 * b.col_stride, b.col_stride, C + j0,
                    c.row_stride, ep.accumulate);
      finish_rows(ep, C, c.row_stride, R, M, j0, j1);
    });
  }
  return true;
}

}  // namespace

namespace {

void sgemm_run(const GemmKernelSet& ks, const GemmConfig& cfg_in, int64_t batch, int64_t M, int64_t N, int64_t K,
               MatrixView a, MatrixView b, OutputView c, const GemmEpilogue& ep, const PackedB* packed) {
  KILN_CHECK(batch >= 0 && M >= 0 && N >= 0 && K >= 0, "sgemm: negative size (", batch, ", ", M, ", ", N, ", ", K,
             ")");
  if (batch == 0 || M == 0 || N == 0) return;
  if (K == 0) return epilogue_only(batch, M, N, c, ep);
  if (try_small_m(ks, batch, M, N, K, a, b, c, ep)) return;
  GemmProblem prob{batch, M, N, K, 1, a.col_stride != 1 && a.row_stride == 1, b.col_stride != 1 && b.row_stride == 1};
  GemmConfig cfg = sanitize_gemm_config(ks, prob, cfg_in);
  if (packed) {  // the packing fixed the micro-kernel and the depth blocks
    cfg.kernel = packed->kernel;
    cfg.kc = packed->kc;
    cfg = sanitize_gemm_config(ks, prob, cfg);
  }
  const GemmMicroKernel& mk = ks.kernels[cfg.kernel];
  const Job job{mk, cfg, M, N, K, a, b, c, ep, packed};
  const int64_t NR = mk.nr, MR = mk.mr;
  const int64_t bbuf_floats = round_up(std::min(cfg.nc, N), NR) * cfg.kc;

  int nt = in_parallel_region() ? 1 : get_num_threads();
  // Below ~64k multiply-adds a second thread costs more than it saves.
  if (M * N * K * batch < (int64_t{1} << 16)) nt = 1;

  if (nt == 1) {
    float* bbuf = t_pack_b.get(bbuf_floats);
    for (int64_t bi = 0; bi < batch; ++bi) gemm_block(job, bi, 0, M, 0, N, 0, 1, bbuf);
    return;
  }
  if (batch >= nt) {
    parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
      float* bbuf = t_pack_b.get(bbuf_floats);
      for (int64_t bi = lo; bi < hi; ++bi) gemm_block(job, bi, 0, M, 0, N, 0, 1, bbuf);
    });
    return;
  }
  for (int64_t bi = 0; bi < batch; ++bi) {
    if (cfg.split_n) {
      const int64_t panels = (N + NR - 1) / NR;
      parallel_for(0, panels, 1, [&](int64_t lo, int64_t hi) {
        float* bbuf = t_pack_b.get(bbuf_floats);
        gemm_block(job, bi, 0, M, lo * NR, std::min(N, hi * NR), 0, 1, bbuf);
      });
    } else {
      float* bbuf = t_pack_b.get(bbuf_floats);  // the calling thread's buffer, shared by the team
      const int64_t panels = (M + MR - 1) / MR;
#pragma omp parallel num_threads(nt)
      {
        const int tid = omp_get_thread_num(), team = omp_get_num_threads();
        const int64_t per = (panels + team - 1) / team;
        const int64_t lo = std::min(M, tid * per * MR), hi = std::min(M, (tid + 1) * per * MR);
        gemm_block(job, bi, lo, hi, 0, N, tid, team, bbuf);
      }
    }
  }
}

}  // namespace

void sgemm_with(const GemmKernelSet& ks, const GemmConfig& cfg, int64_t batch, int64_t M, int64_t N, int64_t K,
                MatrixView a, MatrixView b, OutputView c, const GemmEpilogue& ep) {
  sgemm_run(ks, cfg, batch, M, N, K, a, b, c, ep, nullptr);
}

PackedB pack_b_once(int64_t K, int64_t N, MatrixView b) {
  KILN_CHECK(K > 0 && N > 0, "pack_b_once: empty operand (", K, " x ", N, ")");
  const GemmKernelSet& ks = gemm_kernels();
  GemmProblem prob{1, 256, N, K, 1, false, b.col_stride != 1 && b.row_stride == 1};
  const GemmConfig cfg = default_gemm_config(ks, prob);
  const GemmMicroKernel& mk = ks.kernels[cfg.kernel];
  PackedB p;
  p.K = K;
  p.N = N;
  p.kernel = cfg.kernel;
  p.kc = cfg.kc;
  p.kernels = &ks;
  p.source = b;
  const int64_t panels = (N + mk.nr - 1) / mk.nr;
  p.npad = panels * mk.nr;
  const size_t bytes = (static_cast<size_t>(K * p.npad) * sizeof(float) + 63) / 64 * 64;
  float* data = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!data) throw std::bad_alloc();
  p.data = std::shared_ptr<float>(data, [](float* q) { std::free(q); });
  const float* B = static_cast<const float*>(b.data);
  for (int64_t pc = 0; pc < K; pc += p.kc)
    mk.pack_b(B + pc * b.row_stride, b.row_stride, b.col_stride, std::min(p.kc, K - pc), N, 0, panels,
              data + pc * p.npad);
  return p;
}

void sgemm_prepacked(int64_t M, MatrixView a, const PackedB& b, OutputView c, const GemmEpilogue& ep) {
  const auto& ks = *static_cast<const GemmKernelSet*>(b.kernels);
  KILN_CHECK(&ks == &gemm_kernels(), "sgemm_prepacked: B was packed for another kernel set");
  int nt = in_parallel_region() ? 1 : get_num_threads();
  GemmProblem prob{1, M, b.N, b.K, nt, a.col_stride != 1 && a.row_stride == 1,
                   b.source.col_stride != 1 && b.source.row_stride == 1};
  sgemm_run(ks, gemm_config_for(ks, prob), 1, M, b.N, b.K, a, b.source, c, ep, &b);
}

void sgemm(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, OutputView c,
           const GemmEpilogue& ep) {
  if (batch == 0 || M == 0 || N == 0 || K == 0) return sgemm_with(gemm_kernels(), {}, batch, M, N, K, a, b, c, ep);
  const GemmKernelSet& ks = gemm_kernels();
  int nt = in_parallel_region() ? 1 : get_num_threads();
  GemmProblem prob{batch, M, N, K, nt, a.col_stride != 1 && a.row_stride == 1, b.col_stride != 1 && b.row_stride == 1};
  sgemm_with(ks, gemm_config_for(ks, prob), batch, M, N, K, a, b, c, ep);
}

void gemm_f32(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, float* c,
              const float* bias) {
  GemmEpilogue ep;
  ep.bias = bias;
  sgemm(batch, M, N, K, a, b, OutputView{c, M * N, N}, ep);
}

}  // namespace kiln::ops::cpu
