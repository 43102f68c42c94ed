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

GradientCodec::GradientCodec(std::string kind, double topk_ratio, int64_t topk_warmup)
    : kind_(std::move(kind)), ratio_(topk_ratio), warmup_(topk_warmup) {
  KILN_CHECK(kind_ == "topk" || kind_ == "int8", "compression: unknown kind '", kind_,
             "' (expected none, topk or int8)");
  if (kind_ == "topk") {
    KILN_CHECK(ratio_ > 0 && ratio_ <= 1, "compression: dist.topk_ratio must be in (0, 1], got ", ratio_);
    KILN_CHECK(warmup_ >= 0, "compression: dist.topk_warmup_steps must be >= 0, got ", warmup_);
  }
}

int64_t GradientCodec::topk_count(int64_t n, int64_t exchange) const {
  // Sparsity warm-up (Lin et al. 2018, "Deep Gradient Compression"): the density falls
  // exponentially from 25% to the target over the first `warmup` exchanges, so the large early
  // gradients are not starved while the residuals are still small.
  double ratio = ratio_;
  if (exchange < warmup_ && ratio_ < 0.25)
    ratio = 0.25 * std::pow(ratio_ / 0.25, static_cast<double>(exchange) / static_cast<double>(warmup_));
  return std::clamp<int64_t>(static_cast<int64_t>(std::ceil(ratio * static_cast<double>(n))), 1, std::max<int64_t>(n, 1));
}

int64_t GradientCodec::encoded_bytes(int64_t n, int64_t exchange) const {
  if (kind_ == "topk") return 8 * topk_count(n, exchange);  // int32 indices, then f32 values
  return 4 * ((n + kInt8Block - 1) / kInt8Block) + n;       // f32 scales first (aligned), then int8
}

void GradientCodec::encode(const float* grad, int64_t n, std::vector<float>& residual, uint8_t* out,
                           int64_t exchange) const {
  if (residual.size() != static_cast<size_t>(n)) residual.assign(static_cast<size_t>(n), 0.f);
  float* v = residual.data();
  for (int64_t i = 0; i < n; ++i) v[i] += grad[i];  // what is owed: this gradient plus the unsent rest
  if (kind_ == "int8") {
    auto* scales = reinterpret_cast<float*>(out);
    auto* q = reinterpret_cast<int8_t*>(out + 4 * ((n + kInt8Block - 1) / kInt8Block));
    quantize_int8(v, n, q, scales);
    for (int64_t i = 0; i < n; ++i) v[i] -= static_cast<float>(q[i]) * scales[i / kInt8Block];
    return;
  }
  const int64_t k = topk_count(n, exchange);
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::nth_element(order.begin(), order.begin() + k, order.end(), [v](int32_t a, int32_t b) {
    const float fa = std::abs(v[a]), fb = std::abs(v[b]);
    return fa > fb || (fa == fb && a < b);  // ties by index: the choice is a function of v
  });
  std::sort(order.begin(), order.begin() + k);
  auto* idx = reinterpret_cast<int32_t*>(out);
  auto* val = reinterpret_cast<float*>(out + 4 * k);
  for (int64_t j = 0; j < k; ++j) {
    idx[j] = order[static_cast<size_t>(j)];
    val[j] = v[idx[j]];
    v[idx[j]] = 0.f;
  }
}

void GradientCodec::decode_add(const uint8_t* msg, int64_t n, float* out, int64_t exchange) const {
  if (kind_ == "int8") {
    dequantize_add_int8(reinterpret_cast<const int8_t*>(msg + 4 * ((n + kInt8Block - 1) / kInt8Block)),
                        reinterpret_cast<const float*>(msg), n, out);
    return;
  }
  const int64_t k = topk_count(n, exchange);
  const auto* idx = reinterpret_cast<const int32_t*>(msg);
  const auto* val = reinterpret_cast<const float*>(msg + 4 * k);
  for (int64_t j = 0; j < k; ++j) {
    KILN_CHECK(idx[j] >= 0 && idx[j] < n, "compression: index ", idx[j], " outside a gradient of ", n);
    out[idx[j]] += val[j];
  }
}

namespace {

// Every rank's encoded bucket, gathered, then decoded and summed in rank order.
class GatheringCompressor : public GradientCompressor {
 public:
  explicit GatheringCompressor(GradientCodec codec) : codec_(std::move(codec)) {}
  std::string name() const override { return codec_.kind(); }

  void post(Communicator& comm, int64_t id, float* data, int64_t n) override {
    State& s = states_[id];
    const int64_t bytes = codec_.encoded_bytes(n, s.exchanges);
    if (!s.mine.defined() || s.mine.numel() != bytes) s.mine = Tensor::empty({bytes}, DType::u8);
    codec_.encode(data, n, s.residual, s.mine.data<uint8_t>(), s.exchanges);
    if (!s.all.defined() || s.all.numel() != bytes * comm.size()) s.all = Tensor::empty({bytes * comm.size()}, DType::u8);
    s.work = comm.allgather(s.mine, s.all);
    size_ = comm.size();
  }

  double finish(int64_t id, float* data, int64_t n) override {
    State& s = states_.at(id);
    s.work->wait();
    const int64_t bytes = codec_.encoded_bytes(n, s.exchanges);
    std::fill(data, data + n, 0.f);
    for (int r = 0; r < size_; ++r)  // rank order: the same sum on every rank
      codec_.decode_add(s.all.data<uint8_t>() + r * bytes, n, data, s.exchanges);
    ++s.exchanges;
    return s.work->busy_seconds();
  }

 private:
  struct State {
    std::vector<float> residual;
    Tensor mine, all;  // this rank's message and every rank's, concatenated
    WorkHandle work;
    int64_t exchanges = 0;
  };
  GradientCodec codec_;
  std::map<int64_t, State> states_;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<GradientCompressor> make_compressor(const std::string& kind, double topk_ratio, int64_t topk_warmup) {
  if (kind == "none") return nullptr;
  return std::make_unique<GatheringCompressor>(GradientCodec(kind, topk_ratio, topk_warmup));
}

}  // namespace kiln::dist
