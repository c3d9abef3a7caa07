#include "merge/merge_source.h"

#include <unordered_map>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "io/mapped_file.h"
#include "model/gguf_tensors.h"
#include "model/tensor_bridge.h"
#include "quant/gguf_export.h"
#include "quant/int_formats.h"
#include "quant/quant_types.h"
#include "util/error.h"

namespace anvil::merge {
namespace fs = std::filesystem;
namespace {

int64_t leading_rows(const std::vector<int64_t>& shape) { return shape.empty() ? 1 : shape[0]; }

void copy_tokenizer_files(const fs::path& from, const fs::path& to) {
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                        "vocab.json", "merges.txt", "tokenizer.model"})
    if (fs::exists(from / f)) fs::copy_file(from / f, to / f);
}

// A tensor's stored rows [row0, row0 + rows) as an fp32 copy (a copy: methods may write into it).
at::Tensor plain_rows(const io::TensorView& v, int64_t row0, int64_t rows) {
  at::Tensor t = model::view_tensor(v);
  if (t.dim() >= 1 && (row0 != 0 || rows != t.size(0))) t = t.narrow(0, row0, rows);
  return t.to(at::kFloat, false, true);
}

void release_plain_rows(const io::TensorView& v, int64_t row0, int64_t rows) {
  const int64_t total = leading_rows(v.spec.shape);
  const uint64_t row_bytes = v.bytes.size() / static_cast<uint64_t>(std::max<int64_t>(total, 1));
  const uint64_t begin = static_cast<uint64_t>(row0) * row_bytes;
  if (begin >= v.bytes.size()) return;
  io::release_pages(v.bytes.data() + begin, std::min<uint64_t>(static_cast<uint64_t>(rows) * row_bytes, v.bytes.size() - begin));
}

// A Hugging Face safetensors directory (plain or sharded), read in place.
class SafetensorsSource : public MergeSource {
 public:
  explicit SafetensorsSource(const fs::path& dir) : ckpt_(dir) {
    path_ = dir;
    config_ = model::ModelConfig::load(dir);
    names_ = ckpt_.names();
  }
  const std::vector<int64_t>* shape(const std::string& name) const override {
    const io::TensorView* v = ckpt_.find(name);
    return v ? &v->spec.shape : nullptr;
  }
  const io::TensorView* plain(const std::string& name) const override { return &ckpt_.get(name); }
  at::Tensor read_rows(const std::string& name, int64_t row0, int64_t rows) const override {
    return plain_rows(ckpt_.get(name), row0, rows);
  }
  void release_rows(const std::string& name, int64_t row0, int64_t rows) const override {
    release_plain_rows(ckpt_.get(name), row0, rows);
  }
  uint64_t stored_bytes(const std::string& name) const override { return ckpt_.get(name).bytes.size(); }
  std::string format() const override { return "safetensors"; }
  nlohmann::ordered_json hf_config() const override { return nlohmann::ordered_json::parse(config_.raw_json); }
  void write_tokenizer_files(const fs::path& dir) const override { copy_tokenizer_files(path_, dir); }

 protected:
  io::Checkpoint ckpt_;
};

// INT4/INT8 safetensors: quantized weights under their ".weight" names, unpacked rows at a time.
class IntSource : public SafetensorsSource {
 public:
  IntSource(const fs::path& dir, const quant::IntCheckpoint& info) : SafetensorsSource(dir), info_(info) {
    names_.clear();
    for (auto& t : quant::logical_tensors(ckpt_, info_)) {
      if (t.quantized) quant::load_int_levels(ckpt_, t.name, info_, 0, 0);  // validates the layout, unpacks nothing
      names_.push_back(t.name);
      tensors_[t.name] = std::move(t);
    }
  }
  const std::vector<int64_t>* shape(const std::string& name) const override {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second.shape;
  }
  const io::TensorView* plain(const std::string& name) const override {
    return quantized(name) ? nullptr : &ckpt_.get(name);
  }
  at::Tensor read_rows(const std::string& name, int64_t row0, int64_t rows) const override {
    if (!quantized(name)) return SafetensorsSource::read_rows(name, row0, rows);
    return quant::dequantize_levels(quant::load_int_levels(ckpt_, name, info_, row0, rows));
  }
  void release_rows(const std::string& name, int64_t row0, int64_t rows) const override {
    if (!quantized(name)) SafetensorsSource::release_rows(name, row0, rows);
  }
  uint64_t stored_bytes(const std::string& name) const override {
    if (!quantized(name)) return SafetensorsSource::stored_bytes(name);
    const auto& s = tensors_.at(name).shape;
    return static_cast<uint64_t>(s[0] * s[1]) * static_cast<uint64_t>(info_.bits) / 8;
  }
  std::string format() const override {
    return std::string(info_.format == quant::IntFormat::Gptq ? "GPTQ" : "compressed-tensors") + " INT" +
           std::to_string(info_.bits);
  }
  nlohmann::ordered_json hf_config() const override {
    auto cfg = SafetensorsSource::hf_config();
    cfg.erase("quantization_config");  // the merged model is written in floats
    return cfg;
  }

 private:
  bool quantized(const std::string& name) const {
    auto it = tensors_.find(name);
    return it != tensors_.end() && it->second.quantized;
  }
  quant::IntCheckpoint info_;
  std::unordered_map<std::string, quant::LogicalTensor> tensors_;
};

// A llama.cpp GGUF: llama.cpp's names, rotary row order and value transforms undone per row.
class GgufSource : public MergeSource {
 public:
  explicit GgufSource(const fs::path& file) : gguf_(file) {
    path_ = file;
    config_ = model::ModelConfig::from_gguf(gguf_);
    files_ = quant::hf_files_from_gguf(gguf_, config_);  // checks shapes and vocabulary too
    for (const auto& t : model::gguf_hf_tensors(gguf_, config_)) {
      names_.push_back(t.name);
      shapes_[t.name] = t.shape;
    }
    config_.dtype = default_dtype();
  }
  const std::vector<int64_t>* shape(const std::string& name) const override {
    auto it = shapes_.find(name);
    return it == shapes_.end() ? nullptr : &it->second;
  }
  const io::TensorView* plain(const std::string&) const override { return nullptr; }
  at::Tensor read_rows(const std::string& name, int64_t row0, int64_t rows) const override {
    const auto& shape = shapes_.at(name);
    if (auto m = model::gguf_matrix_view(gguf_, config_, name)) {
      const quant::QuantType& type = *quant::find_quant_type(m->ggml_type);
      at::Tensor out = at::empty({rows, m->cols}, at::kFloat);
      float* dst = out.data_ptr<float>();
      const int64_t row_bytes = type.row_bytes(m->cols);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t stored = m->row_order.empty() ? row0 + r : m->row_order[static_cast<size_t>(row0 + r)];
        type.decode(m->data + stored * row_bytes, dst + r * m->cols, m->cols);
      }
      return out;
    }
    // Vectors and tensors with value transforms (norms) are small: decoded whole.
    auto t = model::read_gguf_hf_tensor(gguf_, config_, name);
    at::Tensor whole = at::from_blob(t.values.data(), {static_cast<int64_t>(t.values.size())}, at::kFloat)
                           .clone()
                           .reshape(shape);
    return whole.dim() >= 1 && (row0 != 0 || rows != whole.size(0)) ? whole.narrow(0, row0, rows).clone() : whole;
  }
  void release_rows(const std::string& name, int64_t row0, int64_t rows) const override {
    auto m = model::gguf_matrix_view(gguf_, config_, name);
    if (!m || !m->row_order.empty()) return;  // rotary rows are read out of order: left to the kernel
    const int64_t row_bytes = quant::find_quant_type(m->ggml_type)->row_bytes(m->cols);
    io::release_pages(m->data + row0 * row_bytes, static_cast<size_t>(rows * row_bytes));
  }
  uint64_t stored_bytes(const std::string& name) const override {
    auto m = model::gguf_matrix_view(gguf_, config_, name);
    if (!m) return 0;
    return static_cast<uint64_t>(m->rows) * quant::find_quant_type(m->ggml_type)->row_bytes(m->cols);
  }
  std::string format() const override { return "GGUF"; }
  nlohmann::ordered_json hf_config() const override {
    return nlohmann::ordered_json::parse(config_.to_hf_json(config_.dtype));
  }
  void write_tokenizer_files(const fs::path& dir) const override {
    io::write_text_file(dir / "tokenizer.json", files_.tokenizer_json);
    io::write_text_file(dir / "tokenizer_config.json", files_.tokenizer_config_json);
  }

 private:
  // The dtype a merge writes by default: the file's own float type, bf16 for quantized files
  // (their values need no more, and fp32 would double a bf16 model's size).
  std::string default_dtype() const {
    bool f16 = false, f32 = false, other = false;
    for (const auto& t : gguf_.tensors()) {
      if (t.dims.size() < 2) continue;  // norms are F32 in every llama.cpp file
      const quant::QuantType* q = quant::find_quant_type(t.type);
      const std::string n = q ? std::string(q->name) : "";
      f16 |= n == "F16";
      f32 |= n == "F32";
      other |= n != "F16" && n != "F32";
    }
    return other ? "bfloat16" : f16 ? "float16" : f32 ? "float32" : "bfloat16";
  }
  io::GgufFile gguf_;
  quant::HfFilesFromGguf files_;
  std::unordered_map<std::string, std::vector<int64_t>> shapes_;
};

}  // namespace

std::unique_ptr<MergeSource> MergeSource::open(const fs::path& path) {
  if (model::is_gguf_file(path)) return std::make_unique<GgufSource>(path);
  if (!io::is_directory_quietly(path)) fail(path.string(), "is neither a model directory nor a GGUF file");
  if (auto info = quant::detect_int_checkpoint(path)) return std::make_unique<IntSource>(path, *info);
  return std::make_unique<SafetensorsSource>(path);
}

}  // namespace anvil::merge
