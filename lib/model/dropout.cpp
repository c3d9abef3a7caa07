#include "model/dropout.h"

#include <cmath>

namespace anvil::model {
namespace {
thread_local at::Generator t_generator;
}

DropoutRandomness::DropoutRandomness(at::Generator generator) : previous_(t_generator) {
  t_generator = std::move(generator);
}

DropoutRandomness::~DropoutRandomness() { t_generator = previous_; }

at::Generator dropout_generator(at::Device device) {
  if (t_generator.defined() && t_generator.device().type() == device.type()) return t_generator;
  return at::globalContext().defaultGenerator(device);
}

at::Tensor dropout(const at::Tensor& x, double p) {
  if (p <= 0) return x;
  auto keep = at::empty_like(x).bernoulli_(1 - p, dropout_generator(x.device()));
  return x * keep.div_(1 - p);
}

at::Tensor neftune_noise(const at::Tensor& embeddings, double alpha) {
  const double magnitude = alpha / std::sqrt(static_cast<double>(embeddings.size(1) * embeddings.size(2)));
  return embeddings + at::empty_like(embeddings).uniform_(-magnitude, magnitude, dropout_generator(embeddings.device()));
}

}  // namespace anvil::model
