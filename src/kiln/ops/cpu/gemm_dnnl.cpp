// f32 GEMM through oneDNN's matmul primitive. oneDNN accepts arbitrary strides for A and B, so
// transposed operands (a weight used as W^T, a gradient's A^T) cost no copy. Creating a
// primitive takes tens of microseconds, so each (shape, strides) key builds it once.
#include <dnnl.hpp>

#include <map>
#include <unordered_map>
#include <mutex>
#include <tuple>

#include "kiln/core/error.h"
#include "kiln/ops/cpu/gemm.h"

namespace kiln::ops::cpu {

namespace {

using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, bool>;

struct Entry {
  dnnl::matmul prim;
  dnnl::memory::desc a, b, bias, c;
};

struct DnnlState {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  std::mutex mu;
  std::map<Key, Entry> cache;
};

DnnlState& state() {
  static DnnlState s;
  return s;
}

dnnl::memory::desc desc(int64_t batch, int64_t rows, int64_t cols, int64_t bs, int64_t rs, int64_t cs) {
  return dnnl::memory::desc({batch, rows, cols}, dnnl::memory::data_type::f32, {bs, rs, cs});
}

}  // namespace

void gemm_f32_onednn(int64_t batch, int64_t M, int64_t N, int64_t K, MatrixView a, MatrixView b, float* c,
              const float* bias) {
  if (M == 0 || N == 0 || batch == 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < batch * M * N; ++i) c[i] = bias ? bias[i % N] : 0.0f;
    return;
  }
  auto& st = state();
  // oneDNN expresses a shared operand as batch size 1 (its broadcast rule), not stride 0.
  int64_t a_batch = a.batch_stride == 0 ? 1 : batch;
  int64_t b_batch = b.batch_stride == 0 ? 1 : batch;
  Key key{batch, M, N, K, a_batch, a.batch_stride, a.row_stride, a.col_stride, b.batch_stride, b.row_stride,
          b.col_stride, bias != nullptr};
  Entry e;
  {
    std::lock_guard<std::mutex> lock(st.mu);
    auto it = st.cache.find(key);
    if (it == st.cache.end()) {
      auto a_md = desc(a_batch, M, K, a_batch == 1 ? M * K : a.batch_stride, a.row_stride, a.col_stride);
      auto b_md = desc(b_batch, K, N, b_batch == 1 ? K * N : b.batch_stride, b.row_stride, b.col_stride);
      auto c_md = desc(batch, M, N, M * N, N, 1);
      auto bias_md = desc(1, 1, N, N, N, 1);
      try {
        dnnl::matmul::primitive_desc pd =
            bias ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, bias_md, c_md), st.engine)
                 : dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), st.engine);
        it = st.cache.emplace(key, Entry{dnnl::matmul(pd), a_md, b_md, bias_md, c_md}).first;
      } catch (const dnnl::error& err) {
        throw BackendError(detail::concat("matmul: oneDNN rejected shape (", batch, ", ", M, ", ", N, ", ", K,
                                          "): ", err.what()));
      }
    }
    e = it->second;
  }
  dnnl::memory am(e.a, st.engine, const_cast<void*>(a.data));
  dnnl::memory bm(e.b, st.engine, const_cast<void*>(b.data));
  dnnl::memory cm(e.c, st.engine, c);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
  if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(e.bias, st.engine, const_cast<float*>(bias)));
  dnnl::stream stream(st.engine);
  e.prim.execute(stream, args);
  stream.wait();
}

}  // namespace kiln::ops::cpu
