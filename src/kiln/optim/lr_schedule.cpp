// The learning-rate schedules.
#include "kiln/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "kiln/core/error.h"

namespace kiln::optim {

namespace {

class ConstantLr final : public LrSchedule {
 public:
  explicit ConstantLr(double lr) : lr_(lr) {}
  double lr_at(int64_t) const override { return lr_; }

 private:
  double lr_;
};

class StepLr final : public LrSchedule {
 public:
  StepLr(double lr, int64_t step_size, double gamma) : lr_(lr), step_size_(step_size), gamma_(gamma) {}
  double lr_at(int64_t step) const override {
    return lr_ * std::pow(gamma_, static_cast<double>(std::max<int64_t>(step, 0) / step_size_));
  }

 private:
  double lr_;
  int64_t step_size_;
  double gamma_;
};

class CosineLr final : public LrSchedule {
 public:
  CosineLr(double lr, int64_t warmup, int64_t total, double min_lr)
      : lr_(lr), warmup_(warmup), total_(total), min_lr_(min_lr) {}
  double lr_at(int64_t step) const override {
    step = std::max<int64_t>(step, 0);
    if (step < warmup_) return lr_ * static_cast<double>(step) / static_cast<double>(warmup_);
    if (step >= total_) return min_lr_;
    double progress = static_cast<double>(step - warmup_) / static_cast<double>(total_ - warmup_);
    return min_lr_ + 0.5 * (lr_ - min_lr_) * (1.0 + std::cos(M_PI * progress));
  }

 private:
  double lr_;
  int64_t warmup_, total_;
  double min_lr_;
};

}  // namespace

std::unique_ptr<LrSchedule> constant_lr(double lr) {
  KILN_CHECK(lr >= 0, "constant_lr: lr must be non-negative, got ", lr);
  return std::make_unique<ConstantLr>(lr);
}

std::unique_ptr<LrSchedule> step_lr(double lr, int64_t step_size, double gamma) {
  KILN_CHECK(lr >= 0 && step_size > 0 && gamma > 0, "step_lr: needs lr >= 0, step_size > 0 and gamma > 0, got lr ",
             lr, ", step_size ", step_size, ", gamma ", gamma);
  return std::make_unique<StepLr>(lr, step_size, gamma);
}

std::unique_ptr<LrSchedule> cosine_lr(double lr, int64_t warmup_steps, int64_t total_steps, double min_lr) {
  KILN_CHECK(lr >= 0 && min_lr >= 0 && min_lr <= lr, "cosine_lr: needs 0 <= min_lr <= lr, got lr ", lr,
             ", min_lr ", min_lr);
  KILN_CHECK(warmup_steps >= 0 && total_steps > warmup_steps, "cosine_lr: needs 0 <= warmup_steps < total_steps, got ",
             warmup_steps, " and ", total_steps);
  return std::make_unique<CosineLr>(lr, warmup_steps, total_steps, min_lr);
}

}  // namespace kiln::optim
