// SGD with momentum, Nesterov and L2 weight decay, PyTorch's update rule (dampening 0):
//   g = grad + wd * p
//   buf = g on the first step, momentum * buf + g after
//   d = g + momentum * buf (Nesterov) or buf (plain momentum) or g (no momentum)
//   p = p - lr * d
// One fused pass over each parameter's memory.
#include "kiln/core/grad_mode.h"
#include "kiln/optim/update_helpers.h"

namespace kiln::optim {

namespace {

class Sgd final : public Optimizer {
 public:
  Sgd(std::vector<Tensor> params, const SgdOptions& opt)
      : Optimizer(std::move(params), opt.lr), opt_(opt), buf_(params_.size()) {
    KILN_CHECK(opt.lr >= 0 && opt.momentum >= 0 && opt.weight_decay >= 0, "sgd: lr ", opt.lr, ", momentum ",
               opt.momentum, " and weight_decay ", opt.weight_decay, " must be non-negative");
    KILN_CHECK(!opt.nesterov || opt.momentum > 0, "sgd: Nesterov momentum needs momentum > 0");
  }

  void step() override {
    NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) {
      Tensor& p = params_[i];
      Tensor g = detail::grad_of(p, i, "sgd");
      if (!g.defined()) continue;
      bool first = false;
      if (opt_.momentum != 0 && !buf_[i].defined()) {
        buf_[i] = Tensor::zeros(p.shape(), p.dtype());
        first = true;
      }
      dispatch_float(p.dtype(), "sgd", [&]<typename T>() { update<T>(p, g, buf_[i], first); });
      p.bump_version();
    }
    ++step_;
  }

  OptimState state_dict() const override {
    OptimState s;
    s["step"] = detail::step_tensor(step_);
    for (size_t i = 0; i < buf_.size(); ++i)
      if (buf_[i].defined()) s["momentum_buffer." + std::to_string(i)] = clone_raw(buf_[i]);
    return s;
  }

  void load_state_dict(const OptimState& state) override {
    int64_t step = detail::load_step(state, "sgd");
    std::vector<Tensor> buf(params_.size());
    for (const auto& [key, value] : state) {
      if (key == "step") continue;
      auto [slot, i] = detail::parse_state_key(key, {"momentum_buffer"}, params_.size(), "sgd");
      buf[i] = detail::load_slot(key, value, params_[i], "sgd");
    }
    step_ = step;
    buf_ = std::move(buf);
  }

  std::string name() const override { return "sgd"; }

 private:
  template <typename T>
  void update(const Tensor& p, const Tensor& g, const Tensor& buf, bool first) {
    T* pd = p.data<T>();
    const T* gd = g.data<T>();
    T* bd = buf.defined() ? buf.data<T>() : nullptr;
    const T lr = static_cast<T>(lr_), wd = static_cast<T>(opt_.weight_decay), mom = static_cast<T>(opt_.momentum);
    const bool nesterov = opt_.nesterov;
    detail::update_chunks(p.numel(), [&](int64_t lo, int64_t hi) {
      for (int64_t j = lo; j < hi; ++j) {
        T d = wd != T(0) ? gd[j] + wd * pd[j] : gd[j];
        if (bd) {
          T b = first ? d : mom * bd[j] + d;
          bd[j] = b;
          d = nesterov ? d + mom * b : b;
        }
        pd[j] = pd[j] - lr * d;
      }
    });
  }

  SgdOptions opt_;
  std::vector<Tensor> buf_;  // momentum buffers, undefined until a parameter's first update
  int64_t step_ = 0;
};

}  // namespace

std::unique_ptr<Optimizer> make_sgd(std::vector<Tensor> params, const SgdOptions& opt) {
  return std::make_unique<Sgd>(std::move(params), opt);
}

}  // namespace kiln::optim
