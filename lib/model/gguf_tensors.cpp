#include "model/gguf_tensors.h"

#include <fstream>

#include "model/gguf_names.h"
#include "model/rotary_layout.h"
#include "model/tensor_shapes.h"
#include "quant/quant_types.h"
#include "util/error.h"

namespace anvil::model {
namespace {

// Where a Hugging Face tensor lives in a GGUF: a whole tensor, or one expert's slice of a stack.
struct Source {
  const io::GgufTensorInfo* tensor = nullptr;
  int64_t expert = -1;
};

Source find_source(const io::GgufFile& gguf, const std::string& hf_name) {
  if (auto name = hf_to_gguf_name(hf_name)) return {gguf.find_tensor(*name), -1};
  if (auto slice = hf_expert_to_gguf(hf_name)) {
    const io::GgufTensorInfo* t = gguf.find_tensor(slice->gguf_name);
    if (t && t->dims.size() == 3 && slice->expert < static_cast<int64_t>(t->dims[2])) return {t, slice->expert};
  }
  return {};
}

}  // namespace

bool is_gguf_file(const std::filesystem::path& path) {
  if (!std::filesystem::is_regular_file(path)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::string_view(magic, 4) == "GGUF";
}

std::vector<HfTensorEntry> gguf_hf_tensors(const io::GgufFile& gguf) {
  std::vector<HfTensorEntry> out;
  for (const auto& t : gguf.tensors()) {
    if (auto hf = gguf_to_hf_name(t.name)) {
      out.push_back({*hf, std::vector<int64_t>(t.dims.rbegin(), t.dims.rend())});
      continue;
    }
    if (t.dims.size() == 3 && gguf_expert_to_hf(t.name, 0)) {
      const std::vector<int64_t> shape{static_cast<int64_t>(t.dims[1]), static_cast<int64_t>(t.dims[0])};
      for (int64_t e = 0; e < static_cast<int64_t>(t.dims[2]); ++e) out.push_back({*gguf_expert_to_hf(t.name, e), shape});
      continue;
    }
    fail(gguf.path().string(), "tensor '" + t.name + "' has no Hugging Face name (unsupported)");
  }
  return out;
}

void check_gguf_shapes(const io::GgufFile& gguf, const ModelConfig& config) {
  std::vector<std::string> present;
  for (const auto& t : gguf.tensors()) {
    if (t.name == "rope_freqs.weight") continue;  // llama3 rotary scaling, checked by ModelConfig::from_gguf
    if (auto hf = gguf_to_hf_name(t.name)) {
      present.push_back(*hf);
    } else if (t.dims.size() == 3 && gguf_expert_to_hf(t.name, 0)) {
      for (int64_t e = 0; e < static_cast<int64_t>(t.dims[2]); ++e) present.push_back(*gguf_expert_to_hf(t.name, e));
    } else {
      fail(gguf.path().string(), "tensor '" + t.name + "' has no role in a " + config.model_type + " model");
    }
  }
  check_tensor_shapes(
      config,
      [&](const std::string& hf_name) -> std::optional<std::vector<int64_t>> {
        const Source src = find_source(gguf, hf_name);
        if (!src.tensor) return std::nullopt;
        const auto& d = src.tensor->dims;
        if (src.expert >= 0) return std::vector<int64_t>{static_cast<int64_t>(d[1]), static_cast<int64_t>(d[0])};
        return std::vector<int64_t>(d.rbegin(), d.rend());
      },
      present, gguf.path().string(), "the GGUF metadata");
}

bool gguf_has_hf_tensor(const io::GgufFile& gguf, const std::string& hf_name) {
  return find_source(gguf, hf_name).tensor != nullptr;
}

HfTensor read_gguf_hf_tensor(const io::GgufFile& gguf, const ModelConfig& config, const std::string& hf_name) {
  const std::string where = gguf.path().string();
  const Source src = find_source(gguf, hf_name);
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
    out.shape.assign(t.dims.rbegin(), t.dims.rend());
  }
  int64_t numel = 1;
  for (int64_t d : out.shape) numel *= d;
  out.values.resize(static_cast<size_t>(numel));
  type->decode(bytes, out.values.data(), numel);
  if (config.arch->gguf_permute_qk && out.shape.size() == 2) {
    const int64_t cols = out.shape[1];
    if (hf_name.ends_with("self_attn.q_proj.weight"))
      out.values = permute_rotary_rows(out.values, config.num_heads, cols, false);
    if (hf_name.ends_with("self_attn.k_proj.weight"))
      out.values = permute_rotary_rows(out.values, config.num_kv_heads, cols, false);
  }
  return out;
}

}  // namespace anvil::model
