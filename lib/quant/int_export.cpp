#include "quant/int_export.h"

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/gguf_names.h"
#include "model/tensor_bridge.h"
#include "quant/calibration.h"
#include "util/error.h"

namespace anvil::quant {
namespace fs = std::filesystem;

IntExportSummary export_int_safetensors(const fs::path& hf_dir, const fs::path& out_dir,
                                        const IntExportOptions& options) {
  const model::ModelConfig config = model::ModelConfig::load(hf_dir);
  if (detect_int_checkpoint(hf_dir)) fail(hf_dir.string(), "is already quantized");
  io::Checkpoint ckpt(hf_dir);
  const IntQuantSpec& spec = options.spec;
  // Scales are stored in the model's own half dtype (compressed-tensors); GPTQ always uses f16.
  const io::DType scale_dtype = config.dtype == "float16" ? io::DType::F16 : io::DType::BF16;
  // The layers' projections, by role: embeddings, LM head, norms and MoE routers stay as they are.
  auto quantized = [&](const io::TensorView& t) {
    const auto role = model::parse_hf_name(*config.arch, t.name());
    if (!role || !model::is_layer_projection(role->role) || t.spec.shape.size() != 2) return false;
    return int_quantizable(t.spec.shape[1], spec);
  };

  std::vector<io::TensorSpec> specs;
  for (const auto& name : ckpt.names()) {
    const io::TensorView& t = ckpt.get(name);
    if (!quantized(t)) {
      specs.push_back(t.spec);
      continue;
    }
    if (options.calibration && !options.calibration->find(name))
      fail("gptq", "the calibration saw no input for '" + name + "'");
    for (auto& s : packed_specs(name, t.spec.shape[0], t.spec.shape[1], spec, options.format, scale_dtype))
      specs.push_back(s);
  }

  io::AtomicDir out(out_dir);
  io::ShardedWriter writer(out.temp_path(), specs, 5'000'000'000ull);
  IntExportSummary summary;
  uint64_t bytes_in = 0;
  int64_t done = 0;
  const int64_t total = static_cast<int64_t>(ckpt.names().size());
  for (const auto& name : ckpt.names()) {
    const io::TensorView& t = ckpt.get(name);
    bytes_in += t.bytes.size();
    if (!quantized(t)) {
      writer.write(name, t.bytes);
      ++summary.copied;
    } else {
      at::Tensor w = model::load_tensor(t, at::kFloat);
      const at::ScalarType sdt = model::to_scalar_type(options.format == IntFormat::Gptq ? io::DType::F16 : scale_dtype);
      QuantizedMatrix m = options.calibration
                              ? quantize_gptq(w, *options.calibration->find(name), spec, sdt, options.damp)
                              : quantize_rtn(w, spec, sdt);
      for (const auto& o : pack_int_weight(name, m, spec, options.format, scale_dtype)) writer.write(o.spec.name, o.bytes);
      ++summary.quantized;
    }
    if (options.progress) options.progress(++done, total, bytes_in);
  }
  writer.commit();

  auto cfg = nlohmann::ordered_json::parse(io::read_text_file(hf_dir / "config.json"));
  auto qcfg = quantization_config(options.format, spec, options.calibration != nullptr);
  cfg["quantization_config"] = qcfg;
  io::write_text_file(out.temp_path() / "config.json", cfg.dump(2) + "\n");
  if (options.format == IntFormat::Gptq) io::write_text_file(out.temp_path() / "quantize_config.json", qcfg.dump(2) + "\n");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                        "generation_config.json"})
    if (fs::exists(hf_dir / f)) fs::copy_file(hf_dir / f, out.temp_path() / f);
  for (const auto& entry : fs::directory_iterator(out.temp_path())) summary.output_bytes += fs::file_size(entry.path());
  out.commit();
  return summary;
}

}  // namespace anvil::quant
