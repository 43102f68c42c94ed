// Fashion-MNIST (Xiao et al. 2017): 28x28 grey images of clothing in 10 classes, 60000 for
// training and 10000 for testing, read from the IDX files of the Debian dataset package.
#pragma once

#include <memory>
#include <string>

#include "kiln/data/tensor_dataset.h"

namespace kiln::data {

constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
// Mean and standard deviation of the training pixels after scaling to [0, 1].
constexpr float kFashionMnistMean = 0.2860f;
constexpr float kFashionMnistStd = 0.3530f;
constexpr int64_t kFashionMnistClasses = 10;

// split: "train" (train-*-idx*-ubyte.gz) or "test" (t10k-*). Inputs (N, 1, 28, 28) f32, scaled
// to [0, 1] then normalised with the mean and std above; targets (N) i64 in [0, 10).
std::shared_ptr<TensorDataset> load_fashion_mnist(const std::string& dir = kFashionMnistDir,
                                                  const std::string& split = "train");

}  // namespace kiln::data
