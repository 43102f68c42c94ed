// Dropout keeps its generator state in a buffer, so loading a state dict resumes the exact mask
// sequence (the property exact checkpoint resume depends on).
#include <gtest/gtest.h>

#include "kiln/nn/activation.h"

using namespace kiln;

TEST(DropoutState, StateDictResumesTheMaskSequence) {
  nn::Dropout a(0.5, 11);
  Tensor x = Tensor::ones({1000});
  a.forward(x);  // advance the stream once
  nn::StateDict saved;
  for (const auto& [k, v] : a.state_dict()) saved[k] = clone_raw(v);
  ASSERT_EQ(saved.count("rng_state"), 1u);
  std::vector<float> next = a.forward(x).to_vector<float>();

  nn::Dropout b(0.5, 999);  // a different seed, then the saved state
  b.load_state_dict(saved);
  EXPECT_EQ(b.forward(x).to_vector<float>(), next);
  // And the masks really are random draws: about half the elements survive, scaled by 2.
  int kept = 0;
  for (float v : next) kept += v == 2.0f;
  EXPECT_GT(kept, 400);
  EXPECT_LT(kept, 600);
}
