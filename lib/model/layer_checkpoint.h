#pragma once
// Gradient checkpointing for one transformer layer: the forward pass keeps only the layer's input;
// the backward pass runs the layer again (with the same random state, so dropout masks repeat)
// and back-propagates through that recomputation.
#include <ATen/ATen.h>

#include <functional>
#include <vector>

namespace anvil::model {

// Returns fn(input). `trainable` are the tensors fn uses that need gradients (LoRA A/B): they
// receive them during the backward pass like any other leaf.
at::Tensor checkpointed_call(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& input,
                             const std::vector<at::Tensor>& trainable);

}  // namespace anvil::model
