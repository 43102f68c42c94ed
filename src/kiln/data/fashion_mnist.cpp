// Fashion-MNIST loader: two IDX files per split, checked against each other, then normalised.
#include "kiln/data/fashion_mnist.h"

#include "kiln/core/thread_pool.h"
#include "kiln/data/idx.h"

namespace kiln::data {

std::shared_ptr<TensorDataset> load_fashion_mnist(const std::string& dir, const std::string& split) {
  KILN_CHECK(split == "train" || split == "test", "load_fashion_mnist: split must be \"train\" or \"test\", got \"",
             split, "\"");
  const std::string prefix = dir + "/" + (split == "train" ? "train" : "t10k");
  const std::string images_path = prefix + "-images-idx3-ubyte.gz";
  const std::string labels_path = prefix + "-labels-idx1-ubyte.gz";
  Tensor images = read_idx(images_path, 3);  // (N, 28, 28) u8
  Tensor labels = read_idx(labels_path, 1);  // (N) u8
  const int64_t n = images.size(0);
  if (images.size(1) != 28 || images.size(2) != 28)
    throw IoError(detail::concat(images_path, ": expected 28x28 images, got ", shape_str(images.shape())));
  if (labels.size(0) != n)
    throw IoError(detail::concat(labels_path, ": holds ", labels.size(0), " labels but ", images_path, " holds ", n,
                                 " images"));

  Tensor targets = Tensor::empty({n}, DType::i64);  // (N)
  const uint8_t* lp = labels.data<uint8_t>();
  int64_t* tp = targets.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (lp[i] >= kFashionMnistClasses)
      throw IoError(detail::concat(labels_path, ": label ", int{lp[i]}, " at index ", i, " is not a class (0 to ",
                                   kFashionMnistClasses - 1, ")"));
    tp[i] = lp[i];
  }

  Tensor inputs = Tensor::empty({n, 1, 28, 28}, DType::f32);  // (N, 1, 28, 28)
  const uint8_t* ip = images.data<uint8_t>();
  float* op = inputs.data<float>();
  // (x / 255 - mean) / std as one multiply-add per pixel.
  const float scale = 1.0f / (255.0f * kFashionMnistStd);
  const float shift = -kFashionMnistMean / kFashionMnistStd;
  parallel_for(0, inputs.numel(), 1 << 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) op[i] = static_cast<float>(ip[i]) * scale + shift;
  });
  return std::make_shared<TensorDataset>(std::move(inputs), std::move(targets));
}

}  // namespace kiln::data
