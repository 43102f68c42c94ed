// Adam and AdamW with PyTorch's formulas (single-tensor path), t = step count after increment:
//   AdamW only: p = p * (1 - lr * wd)             (decoupled decay)
//   Adam only:  g = grad + wd * p                  (L2 into the gradient)
//   m = m + (1 - b1) * (g - m);  v = b2 * v + (1 - b2) * g^2
//   p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// One fused pass over each parameter's memory. The step count is global: a parameter that
// missed gradients on earlier steps still uses the global t for bias correction.
#include <cmath>

#include "kiln/core/grad_mode.h"
#include "kiln/ops/cpu/float_kernels.h"
#include "kiln/optim/update_helpers.h"

namespace kiln::optim {

namespace {

class Adam final : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, const AdamOptions& opt, bool decoupled)
      : Optimizer(std::move(params), opt.lr), opt_(opt), decoupled_(decoupled), m_(params_.size()),
        v_(params_.size()) {
    const char* op = decoupled ? "adamw" : "adam";
    KILN_CHECK(opt.lr >= 0 && opt.eps >= 0 && opt.weight_decay >= 0, op, ": lr ", opt.lr, ", eps ", opt.eps,
               " and weight_decay ", opt.weight_decay, " must be non-negative");
    KILN_CHECK(opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1, op, ": betas must be in [0, 1), got ",
               opt.beta1, ", ", opt.beta2);
  }

  void step() override {
    NoGradGuard no_grad;
    ++step_;
    for (size_t i = 0; i < params_.size(); ++i) {
      Tensor& p = params_[i];
      Tensor g = detail::grad_of(p, i, name().c_str());
      if (!g.defined()) continue;
      if (!m_[i].defined()) {
        m_[i] = Tensor::zeros(p.shape(), p.dtype());
        v_[i] = Tensor::zeros(p.shape(), p.dtype());
      }
      dispatch_float(p.dtype(), name(), [&]<typename T>() { update<T>(p, g, m_[i], v_[i]); });
      p.bump_version();
    }
  }

  OptimState state_dict() const override {
    OptimState s;
    s["step"] = detail::step_tensor(step_);
    for (size_t i = 0; i < m_.size(); ++i) {
      if (!m_[i].defined()) continue;
      s["exp_avg." + std::to_string(i)] = clone_raw(m_[i]);
      s["exp_avg_sq." + std::to_string(i)] = clone_raw(v_[i]);
    }
    return s;
  }

  void load_state_dict(const OptimState& state) override {
    std::string op = name();
    int64_t step = detail::load_step(state, op.c_str());
    std::vector<Tensor> m(params_.size()), v(params_.size());
    for (const auto& [key, value] : state) {
      if (key == "step") continue;
      auto [slot, i] = detail::parse_state_key(key, {"exp_avg", "exp_avg_sq"}, params_.size(), op.c_str());
      (slot == "exp_avg" ? m : v)[i] = detail::load_slot(key, value, params_[i], op.c_str());
    }
    for (size_t i = 0; i < params_.size(); ++i) {
      KILN_CHECK(m[i].defined() == v[i].defined(), op, ": load_state_dict: missing key '",
                 m[i].defined() ? "exp_avg_sq." : "exp_avg.", i, "'");
    }
    step_ = step;
    m_ = std::move(m);
    v_ = std::move(v);
  }

  std::string name() const override { return decoupled_ ? "adamw" : "adam"; }

 private:
  template <typename T>
  void update(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v) {
    T* pd = p.data<T>();
    const T* gd = g.data<T>();
    T* md = m.data<T>();
    T* vd = v.data<T>();
    const double t = static_cast<double>(step_);
    const T decay = static_cast<T>(decoupled_ ? 1.0 - lr_ * opt_.weight_decay : 1.0);
    const T l2 = static_cast<T>(decoupled_ ? 0.0 : opt_.weight_decay);
    const T w1 = static_cast<T>(1.0 - opt_.beta1), b2 = static_cast<T>(opt_.beta2), w2 = static_cast<T>(1.0 - opt_.beta2);
    const T step_size = static_cast<T>(lr_ / (1.0 - std::pow(opt_.beta1, t)));
    const T bc2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(opt_.beta2, t)));
    const T eps = static_cast<T>(opt_.eps);
    if constexpr (std::is_same_v<T, float>) {
      // The f32 pass runs in the per-ISA kernel (vectorised for AVX2/AVX-512); same formula.
      const ops::cpu::AdamStep s{decay, l2, w1, b2, w2, step_size, bc2_sqrt, eps};
      const auto& k = ops::cpu::float_kernels();
      detail::update_chunks(p.numel(), [&](int64_t lo, int64_t hi) { k.adam(pd + lo, gd + lo, md + lo, vd + lo, hi - lo, s); });
      return;
    }
    detail::update_chunks(p.numel(), [&](int64_t lo, int64_t hi) {
      for (int64_t j = lo; j < hi; ++j) {
        T pj = pd[j] * decay;
        T gj = gd[j] + l2 * pj;
        T mj = md[j] + w1 * (gj - md[j]);
        T vj = b2 * vd[j] + w2 * gj * gj;
        md[j] = mj;
        vd[j] = vj;
        pd[j] = pj - step_size * (mj / (std::sqrt(vj) / bc2_sqrt + eps));
      }
    });
  }

  AdamOptions opt_;
  bool decoupled_;
  std::vector<Tensor> m_, v_;  // first and second moments, undefined until a first update
  int64_t step_ = 0;
};

}  // namespace

std::unique_ptr<Optimizer> make_adam(std::vector<Tensor> params, const AdamOptions& opt) {
  return std::make_unique<Adam>(std::move(params), opt, false);
}

std::unique_ptr<Optimizer> make_adamw(std::vector<Tensor> params, const AdamOptions& opt) {
  return std::make_unique<Adam>(std::move(params), opt, true);
}

}  // namespace kiln::optim
