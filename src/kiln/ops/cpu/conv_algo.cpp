// Convolution algorithm choice and the f32 entry points (see conv_algo.h).
#include "kiln/ops/cpu/conv_algo.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <string>

#include "kiln/core/error.h"
#include "kiln/ops/cpu/tune_cache.h"
#include "kiln/ops/cpu/winograd.h"

namespace kiln::ops::cpu {

namespace {

constexpr std::array<ConvAlgo, 4> kAlgos = {ConvAlgo::im2col, ConvAlgo::direct, ConvAlgo::winograd2,
                                            ConvAlgo::winograd4};

int wino_m(ConvAlgo a) { return a == ConvAlgo::winograd2 ? 2 : 4; }
bool is_wino(ConvAlgo a) { return a == ConvAlgo::winograd2 || a == ConvAlgo::winograd4; }

// KILN_CONV_ALGO, read once.
std::optional<ConvAlgo> forced_algo() {
  static const std::optional<ConvAlgo> forced = []() -> std::optional<ConvAlgo> {
    const char* v = std::getenv("KILN_CONV_ALGO");
    if (!v || !*v || std::string_view(v) == "auto") return std::nullopt;
    return parse_conv_algo(v);
  }();
  return forced;
}

const DirectKernels& direct_for(std::string_view isa) {
  const DirectKernels* k = direct_kernels(isa);
  KILN_CHECK(k != nullptr, "conv2d: the '", isa, "' direct kernels cannot run on this CPU");
  return *k;
}

const WinogradKernels& wino_for(std::string_view isa) {
  const WinogradKernels* k = winograd_kernels(isa);
  KILN_CHECK(k != nullptr, "conv2d: the '", isa, "' Winograd kernels cannot run on this CPU");
  return *k;
}

double time_ms(const std::function<void()>& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Best of two runs (the first also pays for scratch allocation).
double measure_twice(const std::function<void()>& fn) { return std::min(time_ms(fn), time_ms(fn)); }

void run_forward(ConvAlgo a, const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                 float* keep, std::string_view isa, bool relu) {
  switch (a) {
    case ConvAlgo::direct: return direct_conv_forward(s, x, w, b, relu, y, direct_for(isa));
    case ConvAlgo::winograd2:
    case ConvAlgo::winograd4: return winograd_forward(wino_m(a), s, x, w, b, relu, y, keep, wino_for(isa));
    default: return im2col_conv_forward<float>(s, x, w, b, y, keep, relu);
  }
}

void run_backward_data(ConvAlgo a, const ConvShape& s, const float* gy, const float* w, float* gx,
                       std::string_view isa) {
  switch (a) {
    case ConvAlgo::direct: return direct_conv_backward_data(s, gy, w, gx, direct_for(isa));
    case ConvAlgo::winograd2:
    case ConvAlgo::winograd4:
      return winograd_backward(wino_m(a), s, nullptr, w, gy, gx, nullptr, nullptr, wino_for(isa));
    default: return im2col_conv_backward<float>(s, nullptr, w, gy, gx, nullptr, nullptr, nullptr);
  }
}

void run_backward_weights(ConvAlgo a, const ConvShape& s, const float* x, const float* gy, float* gw, float* gb,
                          const float* saved, std::string_view isa) {
  switch (a) {
    case ConvAlgo::direct: return direct_conv_backward_weights(s, x, gy, gw, gb, direct_for(isa));
    case ConvAlgo::winograd2:
    case ConvAlgo::winograd4:
      winograd_backward(wino_m(a), s, x, nullptr, gy, nullptr, gw, saved, wino_for(isa));
      if (gb) conv_bias_grad(gy, s.N, s.O, s.OH() * s.OW(), gb);
      return;
    default: return im2col_conv_backward<float>(s, x, nullptr, gy, nullptr, gw, gb, saved);
  }
}

}  // namespace

std::optional<ConvAlgo> conv_algo_forced() {
  const std::optional<ConvAlgo> f = forced_algo();
  return f && *f != ConvAlgo::automatic ? f : std::nullopt;
}

std::span<const ConvAlgo> all_conv_algos() { return kAlgos; }

std::string_view conv_algo_name(ConvAlgo a) {
  switch (a) {
    case ConvAlgo::automatic: return "auto";
    case ConvAlgo::im2col: return "im2col";
    case ConvAlgo::direct: return "direct";
    case ConvAlgo::winograd2: return "winograd2";
    case ConvAlgo::winograd4: return "winograd4";
  }
  return "?";
}

std::string_view conv_pass_name(ConvPass p) {
  switch (p) {
    case ConvPass::forward: return "fwd";
    case ConvPass::backward_data: return "bwd_data";
    case ConvPass::backward_weights: return "bwd_weights";
  }
  return "?";
}

std::optional<ConvAlgo> parse_conv_algo(std::string_view name) {
  if (name == "auto") return ConvAlgo::automatic;
  if (name == "winograd") return ConvAlgo::winograd4;
  for (ConvAlgo a : kAlgos)
    if (conv_algo_name(a) == name) return a;
  return std::nullopt;
}

bool conv_algo_applicable(ConvAlgo a, const ConvShape& s) {
  switch (a) {
    case ConvAlgo::automatic:
    case ConvAlgo::im2col: return true;
    case ConvAlgo::direct: return s.sh == 1 && s.sw == 1 && s.dh == 1 && s.dw == 1 && s.groups == 1;
    case ConvAlgo::winograd2:
    case ConvAlgo::winograd4: return s.unit_3x3();
  }
  return false;
}

ConvAlgo conv_algo_heuristic(const ConvShape& s, ConvPass pass) {
  const int64_t taps = s.Cg() * s.KH * s.KW;
  // Few taps: a GEMM with K = taps is mostly data movement; the direct loops read the input once.
  // (Its input gradient would be a direct conv with O input channels: not its strength.)
  if (pass != ConvPass::backward_data && taps <= 27 && conv_algo_applicable(ConvAlgo::direct, s))
    return ConvAlgo::direct;
  // Winograd pays off once the channel GEMMs have some depth and the batch fills the lanes.
  if (s.unit_3x3() && s.C >= 8 && s.O >= 8 && s.N >= kWinoLanes / 2)
    return std::min(s.OH(), s.OW()) >= 6 ? ConvAlgo::winograd4 : ConvAlgo::winograd2;
  return ConvAlgo::im2col;
}

std::string conv_tune_key(const ConvShape& s, ConvPass pass) {
  std::string k = "conv:";
  k += conv_pass_name(pass);
  auto add = [&](const char* tag, int64_t v) { k += tag + std::to_string(v); };
  add(":n", s.N), add("c", s.C), add("h", s.H), add("w", s.W), add("o", s.O), add("k", s.KH), add("x", s.KW);
  add("s", s.sh), add("x", s.sw), add("p", s.ph), add("x", s.pw), add("d", s.dh), add("x", s.dw);
  add("g", s.groups), add("b", s.bias ? 1 : 0);
  return k;
}

ConvAlgo conv_algo_resolve(ConvAlgo a, const ConvShape& s, ConvPass pass,
                           const std::function<double(ConvAlgo)>& measure) {
  if (a != ConvAlgo::automatic) return a;
  if (auto f = forced_algo(); f && *f != ConvAlgo::automatic && conv_algo_applicable(*f, s)) return *f;
  const std::string key = conv_tune_key(s, pass);
  if (auto cached = tune_cache_get(key)) {
    if (auto c = parse_conv_algo(*cached); c && *c != ConvAlgo::automatic && conv_algo_applicable(*c, s)) return *c;
  }
  const ConvAlgo guess = conv_algo_heuristic(s, pass);
  if (tune_mode() != TuneMode::on || !measure) return guess;
  ConvAlgo best = guess;
  double best_ms = measure(guess);
  for (ConvAlgo c : kAlgos) {
    if (c == guess || !conv_algo_applicable(c, s)) continue;
    // Direct loops over many taps are slower than a GEMM by an order of magnitude (seconds on a
    // large layer): not worth timing. Its input gradient is a direct conv over O channels.
    const int64_t direct_taps = pass == ConvPass::backward_data ? s.O * s.KH * s.KW : s.C * s.KH * s.KW;
    if (c == ConvAlgo::direct && direct_taps > 64) continue;
    const double ms = measure(c);
    if (ms < best_ms) best = c, best_ms = ms;
  }
  tune_cache_put(key, conv_algo_name(best));
  return best;
}

void conv_forward_f32(ConvAlgo a, const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                      std::string_view isa, bool relu) {
  a = conv_algo_resolve(a, s, ConvPass::forward, [&](ConvAlgo c) {
    return measure_twice([&] { run_forward(c, s, x, w, b, y, nullptr, isa, relu); });
  });
  run_forward(a, s, x, w, b, y, nullptr, isa, relu);
}

void conv_backward_data_f32(ConvAlgo a, const ConvShape& s, const float* gy, const float* w, float* gx,
                            std::string_view isa) {
  a = conv_algo_resolve(a, s, ConvPass::backward_data, [&](ConvAlgo c) {
    return measure_twice([&] { run_backward_data(c, s, gy, w, gx, isa); });
  });
  run_backward_data(a, s, gy, w, gx, isa);
}

void conv_backward_weights_f32(ConvAlgo a, const ConvShape& s, const float* x, const float* gy, float* gw, float* gb,
                               std::string_view isa) {
  a = conv_algo_resolve(a, s, ConvPass::backward_weights, [&](ConvAlgo c) {
    return measure_twice([&] { run_backward_weights(c, s, x, gy, gw, gb, nullptr, isa); });
  });
  run_backward_weights(a, s, x, gy, gw, gb, nullptr, isa);
}

bool conv_algo_pools(ConvAlgo a) { return a == ConvAlgo::direct || is_wino(a); }

void conv_forward_pool2_f32(ConvAlgo a, const ConvShape& s, const float* x, const float* w, const float* b,
                            float* yp, std::string_view isa, bool relu) {
  KILN_CHECK(conv_algo_pools(a) && conv_algo_applicable(a, s), "conv2d: the ", conv_algo_name(a),
             " algorithm cannot pool this convolution in its last pass");
  if (a == ConvAlgo::direct) return direct_conv_forward_pool2(s, x, w, b, relu, yp, direct_for(isa));
  winograd_forward_pool2(wino_m(a), s, x, w, b, relu, yp, wino_for(isa));
}

int64_t conv_saved_elems(ConvAlgo fwd, ConvAlgo bwd_weights, const ConvShape& s) {
  if (fwd != bwd_weights) return 0;
  if (fwd == ConvAlgo::im2col) return im2col_saved_elems(s);
  if (is_wino(fwd)) return winograd_saved_elems(wino_m(fwd), s);
  return 0;
}

void conv_forward_keep_f32(ConvAlgo a, const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                           float* keep, bool relu) {
  run_forward(a, s, x, w, b, y, keep, {}, relu);
}

void conv_backward_f32(ConvAlgo data_algo, ConvAlgo weights_algo, const ConvShape& s, const float* x, const float* w,
                       const float* gy, float* gx, float* gw, float* gb, const float* saved) {
  if (gx && gw && data_algo == weights_algo && data_algo != ConvAlgo::direct) {
    // One pass serves both: im2col shares the regrouped gradient, Winograd its transform dM.
    if (data_algo == ConvAlgo::im2col) return im2col_conv_backward<float>(s, x, w, gy, gx, gw, gb, saved);
    winograd_backward(wino_m(data_algo), s, x, w, gy, gx, gw, saved, wino_for({}));
    if (gb) conv_bias_grad(gy, s.N, s.O, s.OH() * s.OW(), gb);
    return;
  }
  if (gx) run_backward_data(data_algo, s, gy, w, gx, {});
  if (gw) run_backward_weights(weights_algo, s, x, gy, gw, gb, saved, {});
  else if (gb) conv_bias_grad(gy, s.N, s.O, s.OH() * s.OW(), gb);
}

}  // namespace kiln::ops::cpu
