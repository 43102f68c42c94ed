// Learning-rate schedules at chosen steps, against the formulas evaluated by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/core/error.h"
#include "kiln/optim/lr_schedule.h"

using namespace kiln;
using namespace kiln::optim;

TEST(LrSchedule, Constant) {
  auto s = constant_lr(0.3);
  EXPECT_DOUBLE_EQ(s->lr_at(0), 0.3);
  EXPECT_DOUBLE_EQ(s->lr_at(123456), 0.3);
}

TEST(LrSchedule, StepDecay) {
  auto s = step_lr(0.1, 10, 0.5);
  EXPECT_DOUBLE_EQ(s->lr_at(0), 0.1);
  EXPECT_DOUBLE_EQ(s->lr_at(9), 0.1);
  EXPECT_DOUBLE_EQ(s->lr_at(10), 0.05);
  EXPECT_DOUBLE_EQ(s->lr_at(25), 0.025);
  EXPECT_THROW(step_lr(0.1, 0, 0.5), ValueError);
}

TEST(LrSchedule, CosineWithWarmup) {
  auto s = cosine_lr(1.0, 10, 110, 0.1);
  EXPECT_DOUBLE_EQ(s->lr_at(0), 0.0);   // warm-up starts from 0
  EXPECT_DOUBLE_EQ(s->lr_at(5), 0.5);   // linear: 5 / 10
  EXPECT_DOUBLE_EQ(s->lr_at(10), 1.0);  // peak right after warm-up
  // Halfway through the decay: min + (max - min) * (1 + cos(pi/2)) / 2 = 0.55.
  EXPECT_NEAR(s->lr_at(60), 0.55, 1e-12);
  // A quarter of the way: 0.1 + 0.45 * (1 + cos(pi/4)).
  EXPECT_NEAR(s->lr_at(35), 0.1 + 0.45 * (1.0 + std::sqrt(0.5)), 1e-12);
  EXPECT_DOUBLE_EQ(s->lr_at(110), 0.1);
  EXPECT_DOUBLE_EQ(s->lr_at(500), 0.1);
  auto no_warmup = cosine_lr(2.0, 0, 100);
  EXPECT_DOUBLE_EQ(no_warmup->lr_at(0), 2.0);
  EXPECT_NEAR(no_warmup->lr_at(50), 1.0, 1e-12);
  EXPECT_THROW(cosine_lr(1.0, 10, 10), ValueError);
}
