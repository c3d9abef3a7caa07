// Gemma: (1 + w) RMSNorm, GeGLU with tanh GELU, embeddings times sqrt(hidden), tied head.
#include "model/architecture.h"
#include "model/families/gemma_common.h"
#include "model/gguf_hparams.h"

namespace anvil::model {

const Architecture& gemma_family() {
  static constexpr HParam keys[] = {HParam::RmsEpsilon, HParam::KeyLength, HParam::ValueLength};
  static const RoleNames names = llama_hf_names();
  static const Architecture a{
      .model_type = "gemma",
      .hf_class = "GemmaForCausalLM",
      .gguf_arch = "gemma",
      .norm = NormKind::RmsPlusOne,
      .activation = Activation::GeluTanh,
      .embeddings_times_sqrt_hidden = true,
      .tie_word_embeddings = true,
      .hf_names = &names,
      .gguf_norm_plus_one = true,
      .gguf_keys = keys,
      .read_config = read_gemma_common,
      .write_config = write_gemma_common,
  };
  return a;
}

}  // namespace anvil::model
