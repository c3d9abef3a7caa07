// Mistral: Llama's layout with a sliding attention window (Mistral-7B v0.1: 4096). llama.cpp
// writes it as "llama" and drops the window.
#include "model/architecture.h"
#include "model/gguf_hparams.h"

namespace anvil::model {

const Architecture& mistral_family() {
  static constexpr HParam keys[] = {HParam::RopeScalingLinear, HParam::RopeDimensionCount, HParam::RmsEpsilon, HParam::RopeFreqBase,
                                    HParam::VocabSize, HParam::KeyLength, HParam::ValueLength};
  static const RoleNames names = llama_hf_names();
  static const Architecture a{
      .model_type = "mistral",
      .hf_class = "MistralForCausalLM",
      .gguf_arch = "llama",
      .hf_names = &names,
      .gguf_permute_qk = true,
      .gguf_keys = keys,
  };
  return a;
}

}  // namespace anvil::model
