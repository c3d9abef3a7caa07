#include "quant/int_formats.h"

#include <cstring>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "model/tensor_bridge.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::quant {
namespace fs = std::filesystem;
namespace {

std::string stem(const std::string& weight_name) {  // "a.b.weight" -> "a.b"
  return weight_name.substr(0, weight_name.size() - std::string(".weight").size());
}

template <typename T>
io::OwnedTensor owned(const std::string& name, io::DType dtype, std::vector<int64_t> shape, const T* data, size_t n) {
  io::OwnedTensor t;
  t.spec = {name, dtype, std::move(shape)};
  t.bytes.resize(n * sizeof(T));
  std::memcpy(t.bytes.data(), data, t.bytes.size());
  return t;
}

io::OwnedTensor owned_tensor(const std::string& name, const at::Tensor& t, io::DType dtype) {
  at::Tensor c = t.to(model::to_scalar_type(dtype)).contiguous();
  io::OwnedTensor o;
  o.spec = {name, dtype, std::vector<int64_t>(c.sizes().begin(), c.sizes().end())};
  auto* p = static_cast<const uint8_t*>(c.data_ptr());
  o.bytes.assign(p, p + c.nbytes());
  return o;
}

at::Tensor view(const io::Checkpoint& ckpt, const std::string& name) {
  const io::TensorView* v = ckpt.find(name);
  if (!v) fail(ckpt.path().string(), "quantized weight lacks '" + name + "'");
  return model::view_tensor(*v);
}

// Unpacks int32 words into `per` unsigned values each, lowest bits first, along dimension `dim`.
at::Tensor unpack(const at::Tensor& packed, int bits, int64_t dim) {
  const int64_t per = 32 / bits;
  auto words = packed.to(at::kLong).bitwise_and(static_cast<int64_t>(0xFFFFFFFF));  // as unsigned
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < per; ++i) parts.push_back(words.bitwise_right_shift(static_cast<int64_t>(bits * i)).bitwise_and(static_cast<int64_t>((1 << bits) - 1)));
  auto stacked = at::stack(parts, dim + 1);  // [..., n, per, ...]
  auto sizes = packed.sizes().vec();
  sizes[dim] *= per;
  return stacked.reshape(sizes);
}

}  // namespace

std::optional<IntFormat> parse_int_format(const std::string& name) {
  if (name == "compressed-tensors") return IntFormat::CompressedTensors;
  if (name == "gptq") return IntFormat::Gptq;
  return std::nullopt;
}

std::vector<io::TensorSpec> packed_specs(const std::string& weight_name, int64_t out, int64_t in,
                                         const IntQuantSpec& spec, IntFormat format, io::DType scale_dtype) {
  const std::string s = stem(weight_name);
  const int64_t per = 32 / spec.bits, G = spec.groups(in);
  if (format == IntFormat::CompressedTensors)
    return {{s + ".weight_packed", io::DType::I32, {out, in / per}},
            {s + ".weight_scale", scale_dtype, {out, G}},
            {s + ".weight_shape", io::DType::I64, {2}}};
  return {{s + ".qweight", io::DType::I32, {in / per, out}},
          {s + ".qzeros", io::DType::I32, {G, (out + per - 1) / per}},
          {s + ".scales", io::DType::F16, {G, out}},
          {s + ".g_idx", io::DType::I32, {in}}};
}

std::vector<io::OwnedTensor> pack_int_weight(const std::string& weight_name, const QuantizedMatrix& m,
                                             const IntQuantSpec& spec, IntFormat format, io::DType scale_dtype) {
  const std::string s = stem(weight_name);
  const int64_t out = m.q.size(0), in = m.q.size(1), per = 32 / spec.bits, G = spec.groups(in);
  const int64_t zero = int64_t{1} << (spec.bits - 1);
  at::Tensor q = m.q.contiguous();
  const int8_t* qv = q.data_ptr<int8_t>();
  std::vector<io::OwnedTensor> result;
  if (format == IntFormat::CompressedTensors) {
    std::vector<uint32_t> packed(out * (in / per), 0);
    for (int64_t r = 0; r < out; ++r)
      for (int64_t c = 0; c < in; ++c)
        packed[r * (in / per) + c / per] |= static_cast<uint32_t>(qv[r * in + c] + zero) << (spec.bits * (c % per));
    const int64_t shape[2] = {out, in};
    result.push_back(owned(s + ".weight_packed", io::DType::I32, {out, in / per}, packed.data(), packed.size()));
    result.push_back(owned_tensor(s + ".weight_scale", m.scale, scale_dtype));
    result.push_back(owned(s + ".weight_shape", io::DType::I64, {2}, shape, 2));
    return result;
  }
  std::vector<uint32_t> qweight((in / per) * out, 0);
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c)
      qweight[(c / per) * out + r] |= static_cast<uint32_t>(qv[r * in + c] + zero) << (spec.bits * (c % per));
  const int64_t zcols = (out + per - 1) / per;
  std::vector<uint32_t> qzeros(G * zcols, 0);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t r = 0; r < out; ++r)
      qzeros[g * zcols + r / per] |= static_cast<uint32_t>(zero - 1) << (spec.bits * (r % per));
  std::vector<int32_t> g_idx(in);
  for (int64_t c = 0; c < in; ++c) g_idx[c] = static_cast<int32_t>(c / spec.width(in));
  result.push_back(owned(s + ".qweight", io::DType::I32, {in / per, out}, qweight.data(), qweight.size()));
  result.push_back(owned(s + ".qzeros", io::DType::I32, {G, zcols}, qzeros.data(), qzeros.size()));
  result.push_back(owned_tensor(s + ".scales", m.scale.t(), io::DType::F16));
  result.push_back(owned(s + ".g_idx", io::DType::I32, {in}, g_idx.data(), g_idx.size()));
  return result;
}

nlohmann::ordered_json quantization_config(IntFormat format, const IntQuantSpec& spec, bool calibrated) {
  nlohmann::ordered_json q;
  if (format == IntFormat::CompressedTensors) {
    nlohmann::ordered_json weights{{"actorder", nullptr},
                                   {"block_structure", nullptr},
                                   {"dynamic", false},
                                   {"group_size", spec.group_size > 0 ? nlohmann::ordered_json(spec.group_size) : nullptr},
                                   {"num_bits", spec.bits},
                                   {"observer", "minmax"},
                                   {"observer_kwargs", nlohmann::ordered_json::object()},
                                   {"strategy", spec.group_size > 0 ? "group" : "channel"},
                                   {"symmetric", true},
                                   {"type", "int"}};
    q["config_groups"] = {{"group_0",
                           {{"input_activations", nullptr},
                            {"output_activations", nullptr},
                            {"targets", {"Linear"}},
                            {"weights", weights}}}};
    q["format"] = "pack-quantized";
    q["ignore"] = {"lm_head"};
    q["kv_cache_scheme"] = nullptr;
    q["quant_method"] = "compressed-tensors";
    q["quantization_status"] = "compressed";
    return q;
  }
  q["bits"] = spec.bits;
  q["group_size"] = spec.group_size > 0 ? spec.group_size : -1;
  q["damp_percent"] = 0.01;
  q["desc_act"] = false;
  q["static_groups"] = false;
  q["sym"] = true;
  q["true_sequential"] = false;
  q["quant_method"] = "gptq";
  q["checkpoint_format"] = "gptq";
  q["model_file_base_name"] = "model";
  q["meta"] = {{"quantizer", calibrated ? "anvil gptq" : "anvil rtn"}};
  return q;
}

std::optional<IntCheckpoint> detect_int_checkpoint(const fs::path& model_dir) {
  const fs::path cfg_path = model_dir / "config.json";
  if (!fs::exists(cfg_path)) return std::nullopt;
  const nlohmann::json cfg = util::parse_json(io::read_text_file(cfg_path), cfg_path.string());
  if (!cfg.is_object() || !cfg.contains("quantization_config") || cfg["quantization_config"].is_null()) return std::nullopt;
  const std::string where = cfg_path.string();
  const util::JsonFields q(cfg["quantization_config"], where, "quantization_config.");
  const std::string method = q.string_or("quant_method", "");
  IntCheckpoint info;
  if (method == "gptq") {
    info.format = IntFormat::Gptq;
    info.bits = static_cast<int>(q.integer_or("bits", 4, 1, 32));
    info.gptq_v2_zeros = q.string_or("checkpoint_format", "gptq") == "gptq_v2";
  } else if (method == "compressed-tensors") {
    info.format = IntFormat::CompressedTensors;
    if (const std::string format = q.string_or("format", ""); format != "pack-quantized")
      fail(where, "compressed-tensors format '" + format + "' is not supported (pack-quantized is)");
    const nlohmann::json* groups = q.find("config_groups");
    if (!groups || !groups->is_object() || groups->size() != 1)
      fail(where, "quantization_config.config_groups: exactly one config group is supported");
    const util::JsonFields group(groups->begin().value(), where,
                                 "quantization_config.config_groups." + groups->begin().key() + ".");
    const nlohmann::json* weights = group.find("weights");
    if (!weights) group.error("weights", "is missing");
    const util::JsonFields w(*weights, where, "quantization_config.config_groups." + groups->begin().key() + ".weights.");
    info.bits = static_cast<int>(w.integer_or("num_bits", 4, 1, 32));
    if (!w.boolean_or("symmetric", true)) fail(where, "asymmetric pack-quantized weights are not supported");
    if (w.string_or("type", "int") != "int") fail(where, "only integer weights are supported");
  } else {
    fail(where, "quantization_config.quant_method '" + method + "' is not supported (gptq and compressed-tensors are)");
  }
  if (info.bits != 4 && info.bits != 8) fail(where, std::to_string(info.bits) + "-bit weights are not supported");
  return info;
}

bool has_int_weight(const io::Checkpoint& ckpt, const std::string& weight_name, const IntCheckpoint& info) {
  return ckpt.contains(stem(weight_name) + (info.format == IntFormat::Gptq ? ".qweight" : ".weight_packed"));
}

IntLevels load_int_levels(const io::Checkpoint& ckpt, const std::string& weight_name, const IntCheckpoint& info,
                          int64_t row0, int64_t row_count) {
  const std::string s = stem(weight_name), where = ckpt.path().string() + ": '" + s + "'";
  // Output rows [row0, row0 + row_count) of the whole, checked against the validated row count.
  auto row_range = [&](int64_t rows) {
    if (row_count < 0) row_count = rows - row0;
    if (row0 < 0 || row_count < 0 || row0 + row_count > rows) fail(where, "row range outside the weight");
  };
  const int per = 32 / info.bits;
  IntLevels out;
  if (info.format == IntFormat::CompressedTensors) {
    at::Tensor packed = view(ckpt, s + ".weight_packed"), scale = view(ckpt, s + ".weight_scale");
    at::Tensor shape = view(ckpt, s + ".weight_shape").to(at::kLong);
    if (packed.dim() != 2 || scale.dim() != 2 || shape.numel() != 2 || packed.scalar_type() != at::kInt)
      fail(where, "weight_packed / weight_scale / weight_shape have unexpected shapes or types");
    const int64_t rows = shape[0].item<int64_t>(), in = shape[1].item<int64_t>();
    const int64_t G = scale.size(1);
    if (in <= 0 || packed.size(0) != rows || packed.size(1) * per < in || scale.size(0) != rows || G < 1 || in % G != 0)
      fail(where, "packed sizes do not match weight_shape");
    row_range(rows);
    packed = packed.narrow(0, row0, row_count);
    out.levels = (unpack(packed, info.bits, 1).narrow(1, 0, in) - (int64_t{1} << (info.bits - 1))).to(at::kChar).contiguous();
    out.scales = scale.narrow(0, row0, row_count).to(at::kFloat).contiguous();
    out.group_of_column = at::arange(in, at::kLong).floor_divide(in / G);
    return out;
  }
  at::Tensor qweight = view(ckpt, s + ".qweight"), qzeros = view(ckpt, s + ".qzeros"), scales = view(ckpt, s + ".scales");
  if (qweight.dim() != 2 || qzeros.dim() != 2 || scales.dim() != 2 || qweight.scalar_type() != at::kInt)
    fail(where, "qweight / qzeros / scales have unexpected shapes or types");
  const int64_t in = qweight.size(0) * per, rows = qweight.size(1), G = scales.size(0);
  if (G < 1 || scales.size(1) != rows || qzeros.size(0) != G || qzeros.size(1) * per < rows)
    fail(where, "qweight, qzeros and scales disagree on sizes");
  if (!ckpt.contains(s + ".g_idx") && in % G != 0) fail(where, "the input size is not a multiple of the group count");
  at::Tensor g_idx = ckpt.contains(s + ".g_idx") ? view(ckpt, s + ".g_idx").to(at::kLong)
                                                 : at::arange(in, at::kLong).floor_divide(in / G);
  if (g_idx.dim() != 1 || g_idx.numel() != in || g_idx.min().item<int64_t>() < 0 || g_idx.max().item<int64_t>() >= G)
    fail(where, "g_idx does not index the groups");
  row_range(rows);
  at::Tensor q = unpack(qweight.narrow(1, row0, row_count), info.bits, 0);         // [in, rows]
  at::Tensor zeros = unpack(qzeros, info.bits, 1).narrow(1, row0, row_count);      // [G, rows]
  if (!info.gptq_v2_zeros) zeros = zeros + 1;
  // Levels q - zero lie in [-(2^bits), 2^bits]: int16 holds them for 8 bits, int8 for 4.
  const auto level_type = info.bits <= 4 ? at::kChar : at::kShort;
  out.levels = (q - zeros.index_select(0, g_idx)).t().to(level_type).contiguous();  // [out, in]
  out.scales = scales.narrow(1, row0, row_count).to(at::kFloat).t().contiguous();    // [rows, G]
  out.group_of_column = g_idx.contiguous();
  return out;
}

std::vector<LogicalTensor> logical_tensors(const io::Checkpoint& ckpt, const IntCheckpoint& info) {
  const bool gptq = info.format == IntFormat::Gptq;
  const char* marker = gptq ? ".qweight" : ".weight_packed";
  const std::vector<std::string> companions =
      gptq ? std::vector<std::string>{".qweight", ".qzeros", ".scales", ".g_idx"}
           : std::vector<std::string>{".weight_packed", ".weight_scale", ".weight_shape", ".weight_zero_point"};
  auto ends_with = [](const std::string& a, const std::string& b) {
    return a.size() >= b.size() && a.compare(a.size() - b.size(), b.size(), b) == 0;
  };
  std::vector<LogicalTensor> out;
  for (const auto& name : ckpt.names()) {
    bool companion = false;
    for (const auto& c : companions)
      if (ends_with(name, c)) {
        // A companion belongs to a quantized weight only where that weight's marker tensor exists.
        companion = ckpt.contains(name.substr(0, name.size() - c.size()) + marker);
        if (companion) break;
      }
    if (!companion) {
      out.push_back({name, ckpt.get(name).spec.shape, false});
      continue;
    }
    if (!ends_with(name, marker)) continue;
    const std::string weight = name.substr(0, name.size() - std::string(marker).size()) + ".weight";
    const auto& packed = ckpt.get(name).spec.shape;
    std::vector<int64_t> shape;
    if (gptq) {
      if (packed.size() != 2) fail(ckpt.path().string(), "'" + name + "' must be 2-D");
      shape = {packed[1], packed[0] * (32 / info.bits)};
    } else {
      const at::Tensor s = view(ckpt, weight.substr(0, weight.size() - 7) + ".weight_shape").to(at::kLong);
      if (s.numel() != 2) fail(ckpt.path().string(), "'" + weight + "_shape' must hold two sizes");
      shape = {s[0].item<int64_t>(), s[1].item<int64_t>()};
      if (shape[0] <= 0 || shape[1] <= 0) fail(ckpt.path().string(), "'" + weight + "_shape' must be positive");
    }
    out.push_back({weight, shape, true});
  }
  return out;
}

at::Tensor dequantize_levels(const IntLevels& l) {
  return l.levels.to(at::kFloat) * l.scales.index_select(1, l.group_of_column);
}

at::Tensor load_int_weight(const io::Checkpoint& ckpt, const std::string& weight_name, const IntCheckpoint& info) {
  return dequantize_levels(load_int_levels(ckpt, weight_name, info));
}

}  // namespace anvil::quant
