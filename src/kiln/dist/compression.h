// Gradient compression for data-parallel reduction: fewer bytes on the wire per step, at the
// price of an approximate gradient. Both compressors keep an error-feedback residual per
// bucket (the part of the gradient not sent this step is added to the next step's), which is
// what lets training reach the uncompressed accuracy (Stich et al. 2018; Karimireddy et al. 2019).
//
//   topk: each rank sends the k = ratio * n largest-magnitude entries of (gradient + residual)
//         as (int32 index, f32 value) pairs, gathered from every rank and summed in rank order.
//   int8: each rank sends (gradient + residual) quantised to int8 with one f32 scale per block
//         of 256 values (symmetric, round to nearest), gathered and dequantised in rank order.
//
// The sum is formed in rank order from the same gathered bytes on every rank, so every rank gets
// the same bits and the replicas stay equal. Gathering costs (N - 1) x the compressed size per
// rank: against a dense allreduce's 2 (N - 1) / N x 4 bytes per value it saves most with few ranks.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kiln/dist/communicator.h"

namespace kiln::dist {

// One gradient vector to bytes and back, with error feedback: encode() adds the gradient to the
// caller's residual, writes the message and leaves in the residual what was not sent. `exchange`
// counts previous messages of this vector (top-k's density warm-up depends on it; sender and
// receiver must agree). Shared by data parallelism (gathered) and the parameter server (pushed).
class GradientCodec {
 public:
  GradientCodec(std::string kind, double topk_ratio = 0.01, int64_t topk_warmup = 0);  // "topk" | "int8"
  const std::string& kind() const { return kind_; }
  int64_t encoded_bytes(int64_t n, int64_t exchange) const;
  void encode(const float* grad, int64_t n, std::vector<float>& residual, uint8_t* out, int64_t exchange) const;
  void decode_add(const uint8_t* msg, int64_t n, float* out, int64_t exchange) const;  // out += message

 private:
  int64_t topk_count(int64_t n, int64_t exchange) const;
  std::string kind_;
  double ratio_;
  int64_t warmup_;
};

class GradientCompressor {
 public:
  virtual ~GradientCompressor() = default;
  // Compresses data[0..n) (this rank's summed gradient for bucket `id`) and posts the exchange.
  virtual void post(Communicator& comm, int64_t id, float* data, int64_t n) = 0;
  // Waits for bucket `id`'s exchange and writes the sum over ranks into data[0..n). Returns the
  // communication thread's busy seconds for it.
  virtual double finish(int64_t id, float* data, int64_t n) = 0;
  virtual std::string name() const = 0;
};

// "none" returns nullptr (a dense allreduce); "topk" (ratio in (0, 1], density warm-up over
// topk_warmup exchanges per bucket) or "int8".
std::unique_ptr<GradientCompressor> make_compressor(const std::string& kind, double topk_ratio,
                                                    int64_t topk_warmup = 0);

// Exposed for tests: int8 block quantisation as sent on the wire.
inline constexpr int64_t kInt8Block = 256;
void quantize_int8(const float* x, int64_t n, int8_t* q, float* scales);
void dequantize_add_int8(const int8_t* q, const float* scales, int64_t n, float* out);

}  // namespace kiln::dist
