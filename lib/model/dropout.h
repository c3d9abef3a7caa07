#pragma once
// LoRA dropout with an explicit source of randomness. A DropoutRandomness scope gives the current
// thread its own generator, so data-parallel training workers draw the same masks whatever the
// thread scheduling; without one, the device's default generator is used.
#include <ATen/ATen.h>

namespace anvil::model {

class DropoutRandomness {
 public:
  explicit DropoutRandomness(at::Generator generator);
  ~DropoutRandomness();
  DropoutRandomness(const DropoutRandomness&) = delete;
  DropoutRandomness& operator=(const DropoutRandomness&) = delete;

 private:
  at::Generator previous_;
};

// The generator dropout on `device` draws from on this thread.
at::Generator dropout_generator(at::Device device);

// Inverted dropout (scaled by 1 / (1 - p)), as torch.nn.Dropout in training mode.
at::Tensor dropout(const at::Tensor& x, double p);

// NEFTune (Jain et al., transformers' neftune_post_forward_hook): embeddings [batch, seq, hidden]
// plus noise uniform in +-alpha / sqrt(seq * hidden), drawn from dropout_generator.
at::Tensor neftune_noise(const at::Tensor& embeddings, double alpha);

}  // namespace anvil::model
