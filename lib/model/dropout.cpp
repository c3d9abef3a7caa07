#include "model/dropout.h"

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

}  // namespace anvil::model
