// rnn_forward (rnn_ops.h): ONNX RNN, GRU and LSTM for inference. Per direction, X @ W^T + biases
// for all T*B rows is one GEMM; each step then runs one (GRU without linear_before_reset: two)
// GEMMs of the hidden state against R and the gate arithmetic per batch row.
#include "kiln/ops/rnn_ops.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "kiln/core/error.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/gemm.h"

namespace kiln::ops {

namespace {

using cpu::MatrixView;

struct ActivationInfo {
  const char* name;  // lower case
  RnnActivationKind kind;
  bool uses_alpha, uses_beta;
  float alpha, beta;  // ONNX defaults
};

constexpr ActivationInfo kActivations[] = {
    {"sigmoid", RnnActivationKind::sigmoid, false, false, 0.0f, 0.0f},
    {"tanh", RnnActivationKind::tanh, false, false, 0.0f, 0.0f},
    {"relu", RnnActivationKind::relu, false, false, 0.0f, 0.0f},
    {"affine", RnnActivationKind::affine, true, true, 1.0f, 0.0f},
    {"leakyrelu", RnnActivationKind::leaky_relu, true, false, 0.01f, 0.0f},
    {"thresholdedrelu", RnnActivationKind::thresholded_relu, true, false, 1.0f, 0.0f},
    {"scaledtanh", RnnActivationKind::scaled_tanh, true, true, 1.0f, 1.0f},
    {"hardsigmoid", RnnActivationKind::hard_sigmoid, true, true, 0.2f, 0.5f},
    {"elu", RnnActivationKind::elu, true, false, 1.0f, 0.0f},
    {"softsign", RnnActivationKind::softsign, false, false, 0.0f, 0.0f},
    {"softplus", RnnActivationKind::softplus, false, false, 0.0f, 0.0f},
};

const char* kind_name(RnnKind k) { return k == RnnKind::rnn ? "rnn" : k == RnnKind::gru ? "gru" : "lstm"; }

std::vector<std::string> default_activations(RnnKind kind) {
  switch (kind) {
    case RnnKind::rnn: return {"Tanh"};
    case RnnKind::gru: return {"Sigmoid", "Tanh"};
    case RnnKind::lstm: return {"Sigmoid", "Tanh", "Tanh"};
  }
  return {};
}

// Where things live for one layout: X/XW rows, Y and state slices (offsets in elements).
struct Layout {
  int64_t T, B, I, H, D, G;
  bool batch_first;
  int64_t x_row(int64_t t, int64_t b) const { return batch_first ? b * T + t : t * B + b; }
  int64_t y_off(int64_t t, int64_t d, int64_t b) const {
    return (batch_first ? (b * T + t) * D + d : (t * D + d) * B + b) * H;
  }
  int64_t state_off(int64_t d, int64_t b) const { return (batch_first ? b * D + d : d * B + b) * H; }
};

void check_f32(const Tensor& t, const char* op, const char* what) {
  KILN_CHECK_TYPE(t.dtype() == DType::f32, op, ": ", what, " must be f32, got ", dtype_name(t.dtype()),
                  "\nhelp: recurrent layers run in f32 only; convert the model's weights and inputs to float32");
}

void check_shape(const Tensor& t, const Shape& want, const char* op, const char* what) {
  KILN_CHECK(t.shape() == want, op, ": ", what, " must have shape ", shape_str(want), ", got ", shape_str(t.shape()));
}

// The per-batch sequence lengths, each in [0, T].
std::vector<int64_t> sequence_lengths(const Tensor& lens, int64_t B, int64_t T, const char* op) {
  if (!lens.defined()) return std::vector<int64_t>(static_cast<size_t>(B), T);
  KILN_CHECK_TYPE(lens.dtype() == DType::i32 || lens.dtype() == DType::i64, op,
                  ": sequence_lens must be i32 or i64, got ", dtype_name(lens.dtype()));
  check_shape(lens, {B}, op, "sequence_lens");
  std::vector<int64_t> out = lens.to_vector<int64_t>();
  for (int64_t v : out) KILN_CHECK(v >= 0 && v <= T, op, ": sequence_lens values must be in [0, ", T, "], got ", v);
  return out;
}

float clip_to(float x, float c) { return std::min(c, std::max(-c, x)); }

// out[b, n] = sum_k h[b, k] * r[n0 + n, k] for n < N: rows n0.. of R, transposed by strides.
void hidden_product(const float* h, const float* r, int64_t n0, int64_t N, int64_t B, int64_t H, float* out) {
  cpu::gemm_f32(1, B, N, H, MatrixView{h, 0, H, 1}, MatrixView{r + n0 * H, 0, 1, H}, out, nullptr);
}

// One direction's run: its weights, its state, scratch buffers, and the step functions.
struct DirectionRun {
  const Layout& L;
  const RnnOptions& opt;
  const std::vector<int64_t>& lens;
  int64_t d;
  bool reverse;
  const float* xw;           // (rows, G*H): X @ W^T + folded biases
  const float* r;            // (G*H, H)
  const float* rb;           // (G*H) recurrence bias; only GRU's h block is read here
  const float* p;            // (3*H) peepholes [i, o, f] or nullptr
  const RnnActivation* act;  // this direction's functions (f, g, h)
  float* h;                  // (B, H)
  float* c;                  // (B, H)
  float* y;                  // the whole Y output
  std::vector<float> hr;     // (B, G*H): h @ R^T (GRU without linear_before_reset: (B, 2H), z and r only)
  std::vector<float> zg;     // (B, H) GRU: z gates
  std::vector<float> rh;     // (B, H) GRU: r * h, then (r * h) @ Rh^T

  float pre(float v) const { return opt.clip ? clip_to(v, *opt.clip) : v; }
  float f(int i, float v) const { return rnn_activate(act[i], pre(v)); }
  // Row b's time index at step s, or -1 once its sequence has ended.
  int64_t time_of(int64_t s, int64_t b) const { return s >= lens[b] ? -1 : reverse ? lens[b] - 1 - s : s; }

  // fn(b, t, xw row) for every row still running at step s, rows split over threads.
  template <typename Fn>
  void for_active_rows(int64_t s, Fn&& fn) const {
    const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, L.G * L.H));
    parallel_for(0, L.B, grain, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b)
        if (int64_t t = time_of(s, b); t >= 0) fn(b, t, xw + L.x_row(t, b) * L.G * L.H);
    });
  }
  void emit(int64_t b, int64_t t) const { std::copy(h + b * L.H, h + (b + 1) * L.H, y + L.y_off(t, d, b)); }

  // H = f(x Wi^T + h Ri^T + Wbi + Rbi)
  void rnn_step(int64_t s) {
    const int64_t H = L.H;
    hidden_product(h, r, 0, H, L.B, H, hr.data());
    for_active_rows(s, [&](int64_t b, int64_t t, const float* xr) {
      for (int64_t k = 0; k < H; ++k) h[b * H + k] = f(0, xr[k] + hr[b * H + k]);
      emit(b, t);
    });
  }

  // z = f(x Wz^T + h Rz^T + b), r = f(...); hh = g(x Wh^T + (r*h) Rh^T + Rbh + Wbh), or with
  // linear_before_reset g(x Wh^T + r*(h Rh^T + Rbh) + Wbh); H = (1 - z) * hh + z * h.
  void gru_step(int64_t s) {
    const int64_t H = L.H, B = L.B;
    if (opt.linear_before_reset) {
      hidden_product(h, r, 0, 3 * H, B, H, hr.data());
      for_active_rows(s, [&](int64_t b, int64_t t, const float* xr) {
        const float* q = hr.data() + b * 3 * H;
        for (int64_t k = 0; k < H; ++k) {
          float z = f(0, xr[k] + q[k]), rg = f(0, xr[H + k] + q[H + k]);
          float hh = f(1, xr[2 * H + k] + rg * (q[2 * H + k] + rb[2 * H + k]));
          h[b * H + k] = (1.0f - z) * hh + z * h[b * H + k];
        }
        emit(b, t);
      });
      return;
    }
    hidden_product(h, r, 0, 2 * H, B, H, hr.data());
    std::fill(rh.begin(), rh.end(), 0.0f);
    for_active_rows(s, [&](int64_t b, int64_t, const float* xr) {
      const float* q = hr.data() + b * 2 * H;
      for (int64_t k = 0; k < H; ++k) {
        zg[b * H + k] = f(0, xr[k] + q[k]);
        rh[b * H + k] = f(0, xr[H + k] + q[H + k]) * h[b * H + k];
      }
    });
    // (r * h) @ Rh^T goes to hr, free now that z and r are consumed (GEMM output must not alias A).
    hidden_product(rh.data(), r, 2 * H, H, B, H, hr.data());
    for_active_rows(s, [&](int64_t b, int64_t t, const float* xr) {
      for (int64_t k = 0; k < H; ++k) {
        float z = zg[b * H + k], hh = f(1, xr[2 * H + k] + hr[b * H + k]);
        h[b * H + k] = (1.0f - z) * hh + z * h[b * H + k];
      }
      emit(b, t);
    });
  }

  // Gate blocks i, o, f, c: i = f(.. + Pi*C), f = f(.. + Pf*C) (1 - i with input_forget),
  // c~ = g(..), C' = f*C + i*c~, o = f(.. + Po*C'), H = o * h(C').
  void lstm_step(int64_t s) {
    const int64_t H = L.H;
    hidden_product(h, r, 0, 4 * H, L.B, H, hr.data());
    for_active_rows(s, [&](int64_t b, int64_t t, const float* xr) {
      const float* q = hr.data() + b * 4 * H;
      for (int64_t k = 0; k < H; ++k) {
        const float cp = c[b * H + k];
        const float ig = f(0, xr[k] + q[k] + (p ? p[k] * cp : 0.0f));
        const float fg = opt.input_forget ? 1.0f - ig : f(0, xr[2 * H + k] + q[2 * H + k] + (p ? p[2 * H + k] * cp : 0.0f));
        const float cn = fg * cp + ig * f(1, xr[3 * H + k] + q[3 * H + k]);
        const float og = f(0, xr[H + k] + q[H + k] + (p ? p[H + k] * cn : 0.0f));
        c[b * H + k] = cn;
        h[b * H + k] = og * rnn_activate(act[2], cn);
      }
      emit(b, t);
    });
  }
};

}  // namespace

int64_t rnn_activations_per_direction(RnnKind kind) {
  return kind == RnnKind::rnn ? 1 : kind == RnnKind::gru ? 2 : 3;
}

int64_t rnn_gates(RnnKind kind) { return kind == RnnKind::rnn ? 1 : kind == RnnKind::gru ? 3 : 4; }

RnnDirection rnn_direction_from_name(std::string_view name) {
  if (name == "forward") return RnnDirection::forward;
  if (name == "reverse") return RnnDirection::reverse;
  if (name == "bidirectional") return RnnDirection::bidirectional;
  throw ValueError(detail::concat("rnn: unknown direction '", name, "' (expected forward, reverse or bidirectional)"));
}

std::vector<RnnActivation> rnn_activations(RnnKind kind, int64_t num_directions, const std::vector<std::string>& names,
                                           const std::vector<double>& alphas, const std::vector<double>& betas) {
  const int64_t A = rnn_activations_per_direction(kind);
  std::vector<std::string> list = names.empty() ? default_activations(kind) : names;
  if (static_cast<int64_t>(list.size()) == A && num_directions == 2) {
    std::vector<std::string> one = list;  // inserting a vector's own range into it is undefined
    list.insert(list.end(), one.begin(), one.end());
  }
  KILN_CHECK(static_cast<int64_t>(list.size()) == A * num_directions, kind_name(kind), ": activations must list ",
             A * num_directions, " functions (", A, " per direction, ", num_directions, " direction(s)), got ",
             names.size());
  std::vector<RnnActivation> out;
  size_t ia = 0, ib = 0;
  for (const std::string& name : list) {
    std::string lower;
    for (char ch : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const ActivationInfo* info = nullptr;
    for (const ActivationInfo& a : kActivations)
      if (lower == a.name) info = &a;
    KILN_CHECK_AS(NotImplementedError, info, kind_name(kind), ": unsupported activation '", name,
                  "' (supported: Sigmoid, Tanh, Relu, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, "
                  "Elu, Softsign, Softplus)");
    RnnActivation a{info->kind, info->alpha, info->beta};
    if (info->uses_alpha && ia < alphas.size()) a.alpha = static_cast<float>(alphas[ia++]);
    if (info->uses_beta && ib < betas.size()) a.beta = static_cast<float>(betas[ib++]);
    out.push_back(a);
  }
  return out;
}

float rnn_activate(const RnnActivation& a, float x) {
  switch (a.kind) {
    case RnnActivationKind::sigmoid: return 1.0f / (1.0f + std::exp(-x));
    case RnnActivationKind::tanh: return std::tanh(x);
    case RnnActivationKind::relu: return std::max(0.0f, x);
    case RnnActivationKind::affine: return a.alpha * x + a.beta;
    case RnnActivationKind::leaky_relu: return x >= 0.0f ? x : a.alpha * x;
    case RnnActivationKind::thresholded_relu: return x > a.alpha ? x : 0.0f;
    case RnnActivationKind::scaled_tanh: return a.alpha * std::tanh(a.beta * x);
    case RnnActivationKind::hard_sigmoid: return std::max(0.0f, std::min(1.0f, a.alpha * x + a.beta));
    case RnnActivationKind::elu: return x >= 0.0f ? x : a.alpha * std::expm1(x);
    case RnnActivationKind::softsign: return x / (1.0f + std::fabs(x));
    case RnnActivationKind::softplus: return x > 0.0f ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
  }
  return x;
}

namespace {

// Checks every input against the others; returns the dimensions.
Layout validate(const RnnInputs& in, const RnnOptions& opt, const char* op) {
  KILN_CHECK(in.x.defined() && in.w.defined() && in.r.defined(), op, ": X, W and R are required");
  check_f32(in.x, op, "X");
  check_f32(in.w, op, "W");
  check_f32(in.r, op, "R");
  KILN_CHECK(in.x.dim() == 3, op, ": X must be 3-d ", opt.batch_first ? "(B, T, I)" : "(T, B, I)", ", got ",
             shape_str(in.x.shape()));
  KILN_CHECK(in.r.dim() == 3, op, ": R must be 3-d (D, G*H, H), got ", shape_str(in.r.shape()));
  const int64_t D = opt.direction == RnnDirection::bidirectional ? 2 : 1, G = rnn_gates(opt.kind);
  const int64_t H = opt.hidden_size > 0 ? opt.hidden_size : in.r.shape()[2];
  const Shape& xs = in.x.shape();
  Layout L{opt.batch_first ? xs[1] : xs[0], opt.batch_first ? xs[0] : xs[1], xs[2], H, D, G, opt.batch_first};
  check_shape(in.w, {D, G * H, L.I}, op, "W");
  check_shape(in.r, {D, G * H, H}, op, "R");
  const Shape state = opt.batch_first ? Shape{L.B, D, H} : Shape{D, L.B, H};
  auto check_optional = [&](const Tensor& t, const char* what, const Shape& shape) {
    if (!t.defined()) return;
    check_f32(t, op, what);
    check_shape(t, shape, op, what);
  };
  check_optional(in.b, "B", {D, 2 * G * H});
  check_optional(in.initial_h, "initial_h", state);
  check_optional(in.initial_c, "initial_c", state);
  check_optional(in.p, "P", {D, 3 * H});
  KILN_CHECK(opt.kind == RnnKind::lstm || (!in.initial_c.defined() && !in.p.defined()), op,
             ": initial_c and P exist only for lstm");
  const size_t acts = opt.activations.size(), want = static_cast<size_t>(rnn_activations_per_direction(opt.kind) * D);
  KILN_CHECK(acts == 0 || acts == want, op, ": expected ", want, " activations, got ", acts);
  return L;
}

}  // namespace

RnnResult rnn_forward(const RnnInputs& in, const RnnOptions& opt) {
  const char* op = kind_name(opt.kind);
  const bool lstm = opt.kind == RnnKind::lstm, gru = opt.kind == RnnKind::gru;
  const Layout L = validate(in, opt, op);
  const int64_t T = L.T, B = L.B, I = L.I, H = L.H, D = L.D, G = L.G, A = rnn_activations_per_direction(opt.kind);
  const Shape state_shape = opt.batch_first ? Shape{B, D, H} : Shape{D, B, H};
  const std::vector<int64_t> lens = sequence_lengths(in.sequence_lens, B, T, op);
  std::vector<RnnActivation> acts = opt.activations.empty() ? rnn_activations(opt.kind, D, {}) : opt.activations;

  Tensor x = contiguous_raw(in.x), w = contiguous_raw(in.w), r = contiguous_raw(in.r);
  Tensor bias = in.b.defined() ? contiguous_raw(in.b) : Tensor::zeros({D, 2 * G * H});
  Tensor p = in.p.defined() ? contiguous_raw(in.p) : Tensor();
  Tensor h0 = in.initial_h.defined() ? contiguous_raw(in.initial_h) : Tensor::zeros(state_shape);
  Tensor c0 = in.initial_c.defined() ? contiguous_raw(in.initial_c) : Tensor::zeros(state_shape);
  RnnResult res;
  res.y = Tensor::zeros(opt.batch_first ? Shape{B, T, D, H} : Shape{T, D, B, H});
  res.y_h = Tensor::empty(state_shape);
  if (lstm) res.y_c = Tensor::empty(state_shape);
  const int64_t GH = G * H, rows = T * B;
  const int64_t max_len = lens.empty() ? 0 : *std::max_element(lens.begin(), lens.end());
  float* py = res.y.data<float>();
  std::vector<float> xw(static_cast<size_t>(rows * GH)), fold(static_cast<size_t>(GH));
  std::vector<float> h(static_cast<size_t>(B * H)), c(static_cast<size_t>(B * H));

  for (int64_t d = 0; d < D; ++d) {
    const bool reverse = opt.direction == RnnDirection::reverse || d == 1;
    const float* wb = bias.data<float>() + d * 2 * GH;
    const float* rb = wb + GH;
    // Wb + Rb folds into the projection's bias, except GRU's Rbh under linear_before_reset,
    // which is multiplied by r and so is added per step.
    for (int64_t n = 0; n < GH; ++n)
      fold[n] = wb[n] + (gru && opt.linear_before_reset && n >= 2 * H ? 0.0f : rb[n]);
    if (rows > 0)
      cpu::gemm_f32(1, rows, GH, I, MatrixView{x.data<float>(), 0, I, 1},
                    MatrixView{w.data<float>() + d * GH * I, 0, 1, I}, xw.data(), fold.data());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < H; ++k) {
        h[b * H + k] = h0.data<float>()[L.state_off(d, b) + k];
        c[b * H + k] = c0.data<float>()[L.state_off(d, b) + k];
      }
    DirectionRun run{L, opt, lens, d, reverse, xw.data(), r.data<float>() + d * GH * H, rb,
                     p.defined() ? p.data<float>() + d * 3 * H : nullptr, acts.data() + d * A, h.data(), c.data(), py,
                     std::vector<float>(static_cast<size_t>(B * GH)), std::vector<float>(static_cast<size_t>(B * H)),
                     std::vector<float>(static_cast<size_t>(B * H))};
    for (int64_t s = 0; s < max_len; ++s) {
      if (opt.kind == RnnKind::rnn) run.rnn_step(s);
      else if (gru) run.gru_step(s);
      else run.lstm_step(s);
    }
    for (int64_t b = 0; b < B; ++b) {
      std::copy(h.begin() + b * H, h.begin() + (b + 1) * H, res.y_h.data<float>() + L.state_off(d, b));
      if (lstm) std::copy(c.begin() + b * H, c.begin() + (b + 1) * H, res.y_c.data<float>() + L.state_off(d, b));
    }
  }
  return res;
}

}  // namespace kiln::ops
