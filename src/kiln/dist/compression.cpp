#include "kiln/dist/compression.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>

namespace kiln::dist {

void quantize_int8(const float* x, int64_t n, int8_t* q, float* scales) {
  for (int64_t b = 0; b * kInt8Block < n; ++b) {
    const int64_t lo = b * kInt8Block, hi = std::min(n, lo + kInt8Block);
    float amax = 0.f;
    for (int64_t i = lo; i < hi; ++i) amax = std::max(amax, std::abs(x[i]));
    const float scale = amax > 0.f ? amax / 127.f : 1.f;
    scales[b] = scale;
    for (int64_t i = lo; i < hi; ++i)
      q[i] = static_cast<int8_t>(std::clamp(std::nearbyint(x[i] / scale), -127.f, 127.f));
  }
}

void dequantize_add_int8(const int8_t* q, const float* scales, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] += static_cast<float>(q[i]) * scales[i / kInt8Block];
}

namespace {

// What both compressors share: the residual per bucket, the wire buffers, the pending gather.
class FeedbackCompressor : public GradientCompressor {
 protected:
  struct State {
    std::vector<float> residual;
    Tensor mine, all;  // this rank's message (bytes) and every rank's, concatenated
    WorkHandle work;
    int64_t exchanges = 0;  // completed exchanges of this bucket
  };
  State& state(int64_t id, int64_t n) {
    State& s = states_[id];
    if (s.residual.size() != static_cast<size_t>(n)) s.residual.assign(static_cast<size_t>(n), 0.f);
    return s;
  }
  void gather(Communicator& comm, State& s, int64_t message_bytes) {
    if (!s.all.defined() || s.all.numel() != message_bytes * comm.size())
      s.all = Tensor::empty({message_bytes * comm.size()}, DType::u8);
    s.work = comm.allgather(s.mine, s.all);
    size_ = comm.size();
  }
  std::map<int64_t, State> states_;
  int size_ = 1;
};

class TopK : public FeedbackCompressor {
 public:
  TopK(double ratio, int64_t warmup) : ratio_(ratio), warmup_(warmup) {}
  std::string name() const override { return "topk"; }
  // Sparsity warm-up (Lin et al. 2018, "Deep Gradient Compression"): the density falls
  // exponentially from 25% to the target over the first `warmup` exchanges of each bucket, so the
  // large early gradients are not starved while the residuals are still small.
  int64_t k_of(int64_t n, int64_t exchange) const {
    double ratio = ratio_;
    if (exchange < warmup_ && ratio_ < 0.25)
      ratio = 0.25 * std::pow(ratio_ / 0.25, static_cast<double>(exchange) / static_cast<double>(warmup_));
    return std::clamp<int64_t>(static_cast<int64_t>(std::ceil(ratio * static_cast<double>(n))), 1, n);
  }

  void post(Communicator& comm, int64_t id, float* data, int64_t n) override {
    State& s = state(id, n);
    const int64_t k = k_of(n, s.exchanges);
    // v = gradient + residual; send its k largest entries, keep the rest as the new residual.
    for (int64_t i = 0; i < n; ++i) s.residual[static_cast<size_t>(i)] += data[i];
    std::vector<int32_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    const float* v = s.residual.data();
    std::nth_element(order.begin(), order.begin() + k, order.end(), [v](int32_t a, int32_t b) {
      const float fa = std::abs(v[a]), fb = std::abs(v[b]);
      return fa > fb || (fa == fb && a < b);  // ties by index: the choice is a function of v
    });
    std::sort(order.begin(), order.begin() + k);
    if (!s.mine.defined() || s.mine.numel() != k * 8) s.mine = Tensor::empty({k * 8}, DType::u8);
    auto* idx = reinterpret_cast<int32_t*>(s.mine.data<uint8_t>());
    auto* val = reinterpret_cast<float*>(s.mine.data<uint8_t>() + k * 4);
    for (int64_t j = 0; j < k; ++j) {
      idx[j] = order[static_cast<size_t>(j)];
      val[j] = s.residual[static_cast<size_t>(idx[j])];
      s.residual[static_cast<size_t>(idx[j])] = 0.f;
    }
    gather(comm, s, k * 8);
  }

  double finish(int64_t id, float* data, int64_t n) override {
    State& s = states_.at(id);
    s.work->wait();
    const int64_t k = k_of(n, s.exchanges++);
    std::fill(data, data + n, 0.f);
    for (int r = 0; r < size_; ++r) {  // rank order: the same sum on every rank
      const uint8_t* msg = s.all.data<uint8_t>() + r * k * 8;
      const auto* idx = reinterpret_cast<const int32_t*>(msg);
      const auto* val = reinterpret_cast<const float*>(msg + k * 4);
      for (int64_t j = 0; j < k; ++j) {
        KILN_CHECK(idx[j] >= 0 && idx[j] < n, "topk: rank ", r, " sent index ", idx[j], " outside its bucket of ", n);
        data[idx[j]] += val[j];
      }
    }
    return s.work->busy_seconds();
  }

 private:
  double ratio_;
  int64_t warmup_;
};

class Int8 : public FeedbackCompressor {
 public:
  std::string name() const override { return "int8"; }
  // Wire layout: the f32 scales first (so they stay aligned), then the int8 values.
  static int64_t blocks(int64_t n) { return (n + kInt8Block - 1) / kInt8Block; }
  static int64_t message_bytes(int64_t n) { return 4 * blocks(n) + n; }

  void post(Communicator& comm, int64_t id, float* data, int64_t n) override {
    State& s = state(id, n);
    for (int64_t i = 0; i < n; ++i) s.residual[static_cast<size_t>(i)] += data[i];
    if (!s.mine.defined() || s.mine.numel() != message_bytes(n)) s.mine = Tensor::empty({message_bytes(n)}, DType::u8);
    auto* scales = reinterpret_cast<float*>(s.mine.data<uint8_t>());
    auto* q = reinterpret_cast<int8_t*>(s.mine.data<uint8_t>() + 4 * blocks(n));
    quantize_int8(s.residual.data(), n, q, scales);
    // Error feedback: what quantisation lost stays for the next step.
    for (int64_t i = 0; i < n; ++i) s.residual[static_cast<size_t>(i)] -= static_cast<float>(q[i]) * scales[i / kInt8Block];
    gather(comm, s, message_bytes(n));
  }

  double finish(int64_t id, float* data, int64_t n) override {
    State& s = states_.at(id);
    s.work->wait();
    std::fill(data, data + n, 0.f);
    for (int r = 0; r < size_; ++r) {
      const uint8_t* msg = s.all.data<uint8_t>() + r * message_bytes(n);
      dequantize_add_int8(reinterpret_cast<const int8_t*>(msg + 4 * blocks(n)), reinterpret_cast<const float*>(msg), n,
                          data);
    }
    return s.work->busy_seconds();
  }
};

}  // namespace

std::unique_ptr<GradientCompressor> make_compressor(const std::string& kind, double topk_ratio, int64_t topk_warmup) {
  if (kind == "none") return nullptr;
  if (kind == "topk") {
    KILN_CHECK(topk_ratio > 0 && topk_ratio <= 1, "compression: dist.topk_ratio must be in (0, 1], got ", topk_ratio);
    KILN_CHECK(topk_warmup >= 0, "compression: dist.topk_warmup_steps must be >= 0, got ", topk_warmup);
    return std::make_unique<TopK>(topk_ratio, topk_warmup);
  }
  KILN_CHECK(kind == "int8", "compression: unknown kind '", kind, "' (expected none, topk or int8)");
  return std::make_unique<Int8>();
}

}  // namespace kiln::dist
