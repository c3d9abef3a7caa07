// Llama (and the Llama layout most fine-tunes keep): RMSNorm, SiLU-gated MLP, full rotary.
#include "model/architecture.h"
#include "model/gguf_hparams.h"

namespace anvil::model {

const Architecture& llama_family() {
  static constexpr HParam keys[] = {HParam::RopeScalingLinear, HParam::RopeDimensionCount, HParam::RmsEpsilon, HParam::RopeFreqBase,
                                    HParam::VocabSize, HParam::KeyLength, HParam::ValueLength};
  static const RoleNames names = llama_hf_names();
  static const Architecture a{
      .model_type = "llama",
      .hf_class = "LlamaForCausalLM",
      .gguf_arch = "llama",
      .hf_names = &names,
      .gguf_permute_qk = true,
      .gguf_keys = keys,
  };
  return a;
}

}  // namespace anvil::model
