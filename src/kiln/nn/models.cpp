// The reference models by name. mlp and cnn are plain Sequentials (parameter keys "1.weight",
// ...); resnet_small and gpt_char have their own classes (resnet.h, gpt.h).
#include "kiln/nn/models.h"

#include "kiln/nn/activation.h"
#include "kiln/nn/conv.h"
#include "kiln/nn/gpt.h"
#include "kiln/nn/linear.h"
#include "kiln/nn/pooling.h"
#include "kiln/nn/resnet.h"
#include "kiln/nn/sequential.h"

namespace kiln::nn {

namespace {

// Flatten -> Linear(784, 256) -> ReLU -> Linear(256, 128) -> ReLU -> Linear(128, 10): 235,146 parameters.
ModulePtr make_mlp(const ModelSpec& s, Generator& gen) {
  int64_t in = s.in_channels * s.image_size * s.image_size;
  auto m = std::make_shared<Sequential>();
  m->add(std::make_shared<Flatten>());
  m->add(std::make_shared<Linear>(in, 256, gen));
  m->add(std::make_shared<ReLU>());
  m->add(std::make_shared<Linear>(256, 128, gen));
  m->add(std::make_shared<ReLU>());
  m->add(std::make_shared<Linear>(128, s.num_classes, gen));
  return m;
}

// Conv(1, 32, 3) -> ReLU -> MaxPool 2 -> Conv(32, 64, 3) -> ReLU -> MaxPool 2 -> Flatten (1600)
// -> Linear(1600, 128) -> ReLU -> Linear(128, 10): 225,034 parameters.
ModulePtr make_cnn(const ModelSpec& s, Generator& gen) {
  int64_t side = ((s.image_size - 2) / 2 - 2) / 2;  // 28 -> 26 -> 13 -> 11 -> 5
  KILN_CHECK(side >= 1, "cnn: image_size ", s.image_size, " is too small (needs at least 10)");
  auto m = std::make_shared<Sequential>();
  m->add(std::make_shared<Conv2d>(s.in_channels, 32, 3, gen));
  m->add(std::make_shared<ReLU>());
  m->add(std::make_shared<MaxPool2d>(2));
  m->add(std::make_shared<Conv2d>(32, 64, 3, gen));
  m->add(std::make_shared<ReLU>());
  m->add(std::make_shared<MaxPool2d>(2));
  m->add(std::make_shared<Flatten>());
  m->add(std::make_shared<Linear>(64 * side * side, 128, gen));
  m->add(std::make_shared<ReLU>());
  m->add(std::make_shared<Linear>(128, s.num_classes, gen));
  return m;
}

}  // namespace

std::vector<std::string> model_names() { return {"mlp", "cnn", "resnet_small", "gpt_char"}; }

ModulePtr make_model(const ModelSpec& spec, uint64_t seed) {
  KILN_CHECK(spec.num_classes > 0 && spec.in_channels > 0 && spec.image_size > 0,
             "make_model: num_classes, in_channels and image_size must be positive");
  Generator gen(seed);
  if (spec.name == "mlp") return make_mlp(spec, gen);
  if (spec.name == "cnn") return make_cnn(spec, gen);
  if (spec.name == "resnet_small") return std::make_shared<ResNetSmall>(spec.in_channels, spec.num_classes, gen);
  if (spec.name == "gpt_char") return std::make_shared<GptChar>(spec, seed);
  std::string known;
  for (auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw ValueError("make_model: unknown model '" + spec.name + "'\nhelp: known models are " + known);
}

}  // namespace kiln::nn
