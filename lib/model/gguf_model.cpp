#include "model/gguf_model.h"

namespace anvil::model {

std::unique_ptr<Transformer> load_gguf_transformer(std::shared_ptr<const io::GgufFile> file, const LoadOptions& options) {
  const io::GgufFile& gguf = *file;
  ModelConfig config = ModelConfig::from_gguf(gguf);
  check_gguf_shapes(gguf, config);
  auto has = [&](const std::string& hf) { return gguf_has_hf_tensor(gguf, config, hf); };
  auto get = [&](const std::string& hf) {
    HfTensor t = read_gguf_hf_tensor(gguf, config, hf);
    return at::from_blob(t.values.data(), t.shape, at::TensorOptions().dtype(at::kFloat))
        .to(options.device, options.compute_dtype, false, true);
  };
  // Matrices are computed from their blocks where they lie in the map; the model keeps the file open.
  auto stored = [&](const std::string& hf) -> WeightMatrixPtr {
    auto view = gguf_matrix_view(gguf, config, hf);
    if (!view) return nullptr;
    return stored_rows(view->ggml_type, view->data, view->rows, view->cols, file, std::move(view->row_order));
  };
  return std::make_unique<Transformer>(config, get, has, options, stored);
}

std::unique_ptr<Transformer> load_gguf_transformer(const io::GgufFile& gguf, const LoadOptions& options) {
  return load_gguf_transformer(std::make_shared<const io::GgufFile>(gguf.path()), options);
}

}  // namespace anvil::model
