#include "kiln/core/rng.h"

#include <cmath>

#include "kiln/core/thread_pool.h"

namespace kiln {

namespace {
constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
constexpr int64_t kRandGrain = 1 << 14;

inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// 24 random bits -> [0, 1) exactly representable in f32.
inline float to_unit(uint32_t x) { return static_cast<float>(x >> 8) * (1.0f / 16777216.0f); }

std::array<uint32_t, 4> block(uint64_t seed, uint64_t counter) {
  return philox4x32({static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u},
                    {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
}

template <typename Fill>
Tensor generate(const Shape& shape, Generator& gen, DType dtype, const char* op, Fill fill) {
  Tensor t = Tensor::empty(shape, dtype);
  int64_t n = t.numel();
  uint64_t base = gen.reserve(static_cast<uint64_t>((n + 3) / 4));
  uint64_t seed = gen.seed();
  dispatch_float(dtype, op, [&]<typename T>() {
    T* p = t.data<T>();
    // Work in blocks of 4 elements so each Philox call feeds exactly its own outputs.
    parallel_for(0, (n + 3) / 4, kRandGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        auto r = block(seed, base + static_cast<uint64_t>(b));
        T vals[4];
        fill(r, vals);
        for (int k = 0; k < 4 && b * 4 + k < n; ++k) p[b * 4 + k] = vals[k];
      }
    });
  });
  return t;
}
}  // namespace

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo(kMul0, c[0], &hi0);
    uint32_t lo1 = mulhilo(kMul1, c[2], &hi1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kWeyl0;
    k[1] += kWeyl1;
  }
  return c;
}

float Generator::uniform_at(uint64_t seed, uint64_t base, uint64_t i) {
  return to_unit(block(seed, base + i / 4)[i % 4]);
}

uint64_t Generator::next_u64() {
  auto r = block(state_.seed, reserve(1));
  return (static_cast<uint64_t>(r[0]) << 32) | r[1];
}

double Generator::next_uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

Generator& default_generator() {
  static Generator gen;
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

Tensor rand(const Shape& shape, Generator& gen, DType dtype) { return uniform(shape, 0.0, 1.0, gen, dtype); }

Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype) {
  return generate(shape, gen, dtype, "uniform", [lo, hi](const std::array<uint32_t, 4>& r, auto* out) {
    using T = std::remove_pointer_t<decltype(out)>;
    for (int k = 0; k < 4; ++k) out[k] = static_cast<T>(lo + (hi - lo) * to_unit(r[k]));
  });
}

Tensor randn(const Shape& shape, Generator& gen, DType dtype) { return normal(shape, 0.0, 1.0, gen, dtype); }

Tensor normal(const Shape& shape, double mean, double std, Generator& gen, DType dtype) {
  // Box-Muller on two pairs of words per block: four normals per Philox call.
  return generate(shape, gen, dtype, "normal", [mean, std](const std::array<uint32_t, 4>& r, auto* out) {
    using T = std::remove_pointer_t<decltype(out)>;
    for (int k = 0; k < 4; k += 2) {
      double u1 = (static_cast<double>(r[k] >> 8) + 1.0) / 16777217.0;  // (0, 1]: log is finite
      double u2 = static_cast<double>(r[k + 1] >> 8) / 16777216.0;
      double rad = std::sqrt(-2.0 * std::log(u1));
      out[k] = static_cast<T>(mean + std * rad * std::cos(6.283185307179586 * u2));
      out[k + 1] = static_cast<T>(mean + std * rad * std::sin(6.283185307179586 * u2));
    }
  });
}

}  // namespace kiln
