#include "model/gguf_tensors.h"

#include <algorithm>
#include <fstream>

#include "model/gguf_names.h"
#include "model/tensor_shapes.h"
#include "model/tensor_transforms.h"
#include "quant/quant_types.h"
#include "util/error.h"

namespace anvil::model {
namespace {

// Where a Hugging Face tensor lives in a GGUF: a whole tensor, or one expert's slice of a stack.
struct Source {
  const io::GgufTensorInfo* tensor = nullptr;
  int64_t expert = -1;
  TensorRole role = TensorRole::Count;
};

Source find_source(const io::GgufFile& gguf, const ModelConfig& c, const std::string& hf_name) {
  const auto name = parse_hf_name(*c.arch, hf_name);
  if (!name) return {};
  const io::GgufTensorInfo* t = gguf.find_tensor(gguf_name_of(*name));
  if (!t) return {};
  if (is_expert(name->role)) {
    if (t->dims.size() != 3 || name->expert < 0 || name->expert >= static_cast<int64_t>(t->dims[2])) return {};
    return {t, name->expert, name->role};
  }
  return {t, -1, name->role};
}

// The Hugging Face names of one GGUF tensor (one per expert for a stack); empty if it has none.
std::vector<std::string> hf_names_of(const ModelConfig& c, const io::GgufTensorInfo& t) {
  const auto name = parse_gguf_name(*c.arch, t.name);
  if (!name) return {};
  if (!is_expert(name->role)) return {hf_name_of(*c.arch, *name)};
  std::vector<std::string> out;
  if (t.dims.size() != 3) return out;
  for (int64_t e = 0; e < static_cast<int64_t>(t.dims[2]); ++e)
    out.push_back(hf_name_of(*c.arch, {name->role, name->layer, e}));
  return out;
}

// The Hugging Face shape of a whole (not stacked) GGUF tensor. llama-quantize writes a matrix with
// one row ([1, n], Qwen2-MoE's shared-expert gate) as 1-D, ggml dropping trailing dimensions of
// one: a matrix role keeps its two dimensions.
std::vector<int64_t> hf_shape_of(const io::GgufTensorInfo& t, TensorRole role) {
  std::vector<int64_t> shape(t.dims.rbegin(), t.dims.rend());
  if (shape.size() == 1 && !is_norm(role) && !is_bias(role)) shape.insert(shape.begin(), 1);
  return shape;
}

}  // namespace

bool is_gguf_file(const std::filesystem::path& path) {
  if (!std::filesystem::is_regular_file(path)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::string_view(magic, 4) == "GGUF";
}

std::vector<HfTensorEntry> gguf_hf_tensors(const io::GgufFile& gguf, const ModelConfig& c) {
  std::vector<HfTensorEntry> out;
  for (const auto& t : gguf.tensors()) {
    if (t.name == "rope_freqs.weight") continue;  // recomputed from the config
    const auto names = hf_names_of(c, t);
    if (names.empty()) fail(gguf.path().string(), "tensor '" + t.name + "' has no Hugging Face name in a " + c.model_type + " model");
    const bool stacked = t.dims.size() == 3;
    const auto role = parse_gguf_name(*c.arch, t.name)->role;
    const std::vector<int64_t> shape = stacked ? std::vector<int64_t>(t.dims.rbegin() + 1, t.dims.rend()) : hf_shape_of(t, role);
    for (const auto& n : names) out.push_back({n, shape});
  }
  return out;
}

void check_gguf_shapes(const io::GgufFile& gguf, const ModelConfig& config) {
  std::vector<std::string> present;
  for (const auto& t : gguf.tensors()) {
    if (t.name == "rope_freqs.weight") continue;  // llama3 rotary scaling, checked by ModelConfig::from_gguf
    const auto names = hf_names_of(config, t);
    if (names.empty()) fail(gguf.path().string(), "tensor '" + t.name + "' has no role in a " + config.model_type + " model");
    present.insert(present.end(), names.begin(), names.end());
  }
  check_tensor_shapes(
      config,
      [&](const std::string& hf_name) -> std::optional<std::vector<int64_t>> {
        const Source src = find_source(gguf, config, hf_name);
        if (!src.tensor) return std::nullopt;
        const auto& d = src.tensor->dims;
        if (src.expert >= 0) return std::vector<int64_t>{static_cast<int64_t>(d[1]), static_cast<int64_t>(d[0])};
        return hf_shape_of(*src.tensor, src.role);
      },
      present, gguf.path().string(), "the GGUF metadata");
}

bool gguf_has_hf_tensor(const io::GgufFile& gguf, const ModelConfig& config, const std::string& hf_name) {
  return find_source(gguf, config, hf_name).tensor != nullptr;
}

HfTensor read_gguf_hf_tensor(const io::GgufFile& gguf, const ModelConfig& config, const std::string& hf_name) {
  const std::string where = gguf.path().string();
  const Source src = find_source(gguf, config, hf_name);
  if (!src.tensor) fail(where, "no tensor for '" + hf_name + "'");
  const io::GgufTensorInfo& t = *src.tensor;
  const quant::QuantType* type = quant::find_quant_type(t.type);
  if (!type) fail(where, "tensor '" + t.name + "': ggml type " + std::to_string(t.type) + " cannot be dequantized");
  HfTensor out;
  const uint8_t* bytes = t.data.data();
  if (src.expert >= 0) {  // one [rows, cols] slice of the [experts, rows, cols] stack
    const int64_t cols = static_cast<int64_t>(t.dims[0]), rows = static_cast<int64_t>(t.dims[1]);
    out.shape = {rows, cols};
    bytes += src.expert * rows * type->row_bytes(cols);
  } else {
    out.shape = hf_shape_of(t, src.role);
  }
  int64_t numel = 1;
  for (int64_t d : out.shape) numel *= d;
  out.values.resize(static_cast<size_t>(numel));
  type->decode(bytes, out.values.data(), numel);
  const GgufTransform transform = gguf_transform(config, src.role);
  if (!transform.identity()) {
    const int64_t cols = out.shape.empty() ? 1 : out.shape.back();
    out.values = gguf_to_hf_values(transform, out.values, numel / std::max<int64_t>(cols, 1), cols);
  }
  return out;
}

std::optional<GgufMatrixView> gguf_matrix_view(const io::GgufFile& gguf, const ModelConfig& config,
                                               const std::string& hf_name) {
  const Source src = find_source(gguf, config, hf_name);
  if (!src.tensor || !quant::find_quant_type(src.tensor->type)) return std::nullopt;
  const io::GgufTensorInfo& t = *src.tensor;
  const quant::QuantType& type = *quant::find_quant_type(t.type);
  GgufMatrixView v;
  v.ggml_type = t.type;
  v.data = t.data.data();
  v.cols = static_cast<int64_t>(t.dims[0]);
  if (src.expert >= 0) {
    v.rows = static_cast<int64_t>(t.dims[1]);
    v.data += src.expert * v.rows * type.row_bytes(v.cols);
  } else {
    const auto shape = hf_shape_of(t, src.role);
    if (shape.size() != 2) return std::nullopt;
    v.rows = shape[0];
  }
  const GgufTransform transform = gguf_transform(config, src.role);
  if (transform.offset != 0) return std::nullopt;
  if (transform.rotary_heads > 0) {
    v.row_order.assign(static_cast<size_t>(v.rows), 0);
    for (int64_t g = 0; g < v.rows; ++g)
      v.row_order[static_cast<size_t>(hf_row_of_gguf_row(transform, g, v.rows))] = static_cast<int32_t>(g);
  }
  return v;
}

}  // namespace anvil::model
