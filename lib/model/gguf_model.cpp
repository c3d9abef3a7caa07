#include "model/gguf_model.h"

#include "model/gguf_names.h"
#include "model/rotary_layout.h"
#include "quant/quant_types.h"
#include "util/error.h"

namespace anvil::model {

std::unique_ptr<Transformer> load_gguf_transformer(const io::GgufFile& gguf, const LoadOptions& options) {
  ModelConfig config = ModelConfig::from_gguf(gguf);
  const std::string where = gguf.path().string();
  auto tensor = [&](const std::string& hf) -> const io::GgufTensorInfo* {
    auto name = hf_to_gguf_name(hf);
    return name ? gguf.find_tensor(*name) : nullptr;
  };
  auto has = [&](const std::string& hf) { return tensor(hf) != nullptr; };
  auto get = [&](const std::string& hf) {
    const io::GgufTensorInfo& t = *tensor(hf);
    std::vector<float> w = gguf_tensor_to_hf_floats(t, config, hf, where);
    std::vector<int64_t> shape(t.dims.rbegin(), t.dims.rend());
    return at::from_blob(w.data(), shape, at::TensorOptions().dtype(at::kFloat)).to(options.device, options.compute_dtype, false, true);
  };
  return std::make_unique<Transformer>(config, get, has, options);
}

}  // namespace anvil::model
