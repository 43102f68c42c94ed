// Learning-rate schedules as pure functions of the step number, so a resumed run needs no
// schedule state beyond the step it resumes at.
#pragma once

#include <cstdint>
#include <memory>

namespace kiln::optim {

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  virtual double lr_at(int64_t step) const = 0;  // step counts optimiser updates from 0
};

std::unique_ptr<LrSchedule> constant_lr(double lr);
// lr * gamma^(step / step_size)
std::unique_ptr<LrSchedule> step_lr(double lr, int64_t step_size, double gamma);
// Linear warm-up from 0 over warmup_steps, then cosine decay to min_lr at total_steps.
std::unique_ptr<LrSchedule> cosine_lr(double lr, int64_t warmup_steps, int64_t total_steps, double min_lr = 0.0);

}  // namespace kiln::optim
