#include "model/layer_checkpoint.h"

#include <ATen/core/grad_mode.h>  // at::AutoGradMode (not reached through ATen.h in LibTorch 2.x)

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <mutex>

#include "model/dropout.h"

namespace anvil::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct RecomputeState {
  std::function<at::Tensor(const at::Tensor&)> fn;
  at::Tensor rng_state;  // the device generator's state when the forward pass ran
};

at::Generator generator_for(const at::Tensor& t) { return dropout_generator(t.device()); }

struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  struct StateHolder : torch::CustomClassHolder {
    explicit StateHolder(std::shared_ptr<RecomputeState> s) : state(std::move(s)) {}
    std::shared_ptr<RecomputeState> state;
  };

  // `trainable` must be a TensorList: autograd counts its tensors as inputs one by one.
  static at::Tensor forward(AutogradContext* ctx, at::Tensor input, at::TensorList trainable,
                            std::shared_ptr<RecomputeState> state) {
    auto gen = generator_for(input);
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      state->rng_state = gen.get_state();
    }
    ctx->saved_data["state"] = c10::IValue::make_capsule(c10::make_intrusive<StateHolder>(state));
    variable_list saved{input};
    saved.insert(saved.end(), trainable.begin(), trainable.end());
    ctx->save_for_backward(saved);
    at::NoGradGuard no_grad;
    return state->fn(input);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto holder = c10::static_intrusive_pointer_cast<StateHolder>(ctx->saved_data["state"].toCapsule());
    auto state = holder->state;
    variable_list saved = ctx->get_saved_variables();
    at::Tensor input = saved[0].detach().requires_grad_(true);
    const int64_t n = static_cast<int64_t>(saved.size()) - 1;
    variable_list wrt{input};
    wrt.insert(wrt.end(), saved.begin() + 1, saved.end());
    auto gen = generator_for(input);
    // The generator's own ops lock its mutex, so it is held only while swapping states.
    at::Tensor now;
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      now = gen.get_state();
      gen.set_state(state->rng_state);
    }
    at::Tensor output;
    {
      at::AutoGradMode grad(true);
      output = state->fn(input);
    }
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(now);
    }
    variable_list grads = torch::autograd::grad({output}, wrt, {grad_out[0]}, /*retain_graph=*/false,
                                                /*create_graph=*/false, /*allow_unused=*/true);
    // One gradient per forward() input: the input, each trainable tensor, and none for the state.
    variable_list result{grads[0]};
    for (int64_t i = 0; i < n; ++i) result.push_back(grads[i + 1]);
    result.push_back(at::Tensor());  // state
    return result;
  }
};

}  // namespace

at::Tensor checkpointed_call(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& input,
                             const std::vector<at::Tensor>& trainable) {
  auto state = std::make_shared<RecomputeState>();
  state->fn = std::move(fn);
  return CheckpointedLayer::apply(input, at::TensorList(trainable), state);
}

}  // namespace anvil::model
