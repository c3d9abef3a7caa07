// anvil inspect PATH: what a checkpoint holds, without loading it.
#include <fnmatch.h>

#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "io/model_card.h"
#include "model/gguf_model.h"
#include "model/config.h"
#include "model/config_summary.h"

namespace anvil::cli {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// GGUF: the metadata that describes the model (not the vocabulary arrays) and the tensor table.
// Provenance a GGUF states (llama.cpp's general.* keys and llama-quantize's imatrix keys).
nlohmann::ordered_json gguf_provenance(const io::GgufFile& f) {
  nlohmann::ordered_json p = nlohmann::ordered_json::object();
  for (const char* key : {"general.name", "general.basename", "general.size_label", "general.license", "general.quantized_by",
                          "quantize.imatrix.file", "quantize.imatrix.dataset", "quantize.imatrix.entries_count", "quantize.imatrix.chunks_count"}) {
    const io::GgufValue* v = f.find(key);
    if (!v) continue;
    if (v->as_string()) p[key] = *v->as_string();
    else if (v->as_int()) p[key] = *v->as_int();
  }
  if (const io::GgufValue* n = f.find("general.base_model.count"); n && n->as_int()) {
    nlohmann::ordered_json bases = nlohmann::ordered_json::array();
    for (int64_t i = 0; i < std::min<int64_t>(*n->as_int(), 64); ++i) {
      const io::GgufValue* name = f.find("general.base_model." + std::to_string(i) + ".name");
      const io::GgufValue* org = f.find("general.base_model." + std::to_string(i) + ".organization");
      std::string id = name && name->as_string() ? *name->as_string() : "?";
      if (org && org->as_string()) id = *org->as_string() + "/" + id;
      bases.push_back(id);
    }
    p["base_models"] = bases;
  }
  if (const io::GgufValue* t = f.find("general.tags"); t && t->as_array()) {
    nlohmann::ordered_json tags = nlohmann::ordered_json::array();
    for (const auto& v : t->as_array()->values)
      if (v.as_string()) tags.push_back(*v.as_string());
    p["tags"] = tags;
  }
  return p;
}

// A model directory's card: its front matter and its measured table.
nlohmann::ordered_json card_provenance(const std::filesystem::path& path) {
  nlohmann::ordered_json p = nlohmann::ordered_json::object();
  const auto front = io::read_card_front(path);
  if (!front) return p;
  if (!front->base_model.empty()) p["base_model"] = front->base_model;
  if (!front->base_model_relation.empty()) p["base_model_relation"] = front->base_model_relation;
  if (!front->library_name.empty()) p["library_name"] = front->library_name;
  if (front->license) p["license"] = *front->license;
  if (!front->datasets.empty()) p["datasets"] = front->datasets;
  if (!front->tags.empty()) p["tags"] = front->tags;
  const auto measured = io::read_card_measured(path);
  if (!measured.empty()) p["measured"] = measured;
  return p;
}

void print_provenance(const nlohmann::ordered_json& p) {
  if (p.empty()) return;
  std::cout << "provenance:\n";
  for (auto it = p.begin(); it != p.end(); ++it) {
    if (it.key() == "measured") {
      std::cout << "  measured:\n";
      for (const auto& line : it.value()) std::cout << "    " << line.get<std::string>() << "\n";
      continue;
    }
    std::string value;
    if (it.value().is_array()) {
      for (const auto& v : it.value()) value += (value.empty() ? "" : ", ") + (v.is_string() ? v.get<std::string>() : v.dump());
    } else {
      value = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
    }
    std::printf("  %-28s %s\n", it.key().c_str(), value.c_str());
  }
}

void print_features(const model::ModelConfig& c) {
  const auto features = model::family_features(c);
  if (features.empty()) return;
  std::string line;
  for (const auto& x : features) line += (line.empty() ? "" : ", ") + x;
  std::cout << "features:     " << line << "\n";
}

int inspect_gguf(const std::filesystem::path& path, const cxxopts::ParseResult& args) {
  io::GgufFile f(path);
  // The model the metadata describes, when anvil knows the family (a vocabulary-only or
  // unknown-architecture GGUF still lists its keys and tensors).
  std::optional<model::ModelConfig> config;
  try {
    config = model::ModelConfig::from_gguf(f);
  } catch (const Error&) {
  }
  const std::string filter = args.count("filter") ? args["filter"].as<std::string>() : "";
  int64_t params = 0;
  std::map<std::string, int64_t> type_counts;
  for (const auto& t : f.tensors()) {
    params += static_cast<int64_t>(t.numel());
    type_counts[io::ggml_type_size(t.type)->name]++;
  }
  auto value_text = [](const io::GgufValue& v) -> std::string {
    if (auto s = v.as_string()) return s->size() > 60 ? s->substr(0, 57) + "..." : *s;
    if (auto a = v.as_array()) return "[" + std::to_string(a->values.size()) + " values]";
    if (v.type == io::GgufType::FLOAT32 || v.type == io::GgufType::FLOAT64) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", *v.as_float());
      return buf;
    }
    return std::to_string(*v.as_int());
  };
  if (args.count("json")) {
    nlohmann::ordered_json out{{"path", path.string()}, {"format", "gguf"}, {"version", f.version()}, {"parameters", params},
                               {"size_on_disk", std::filesystem::file_size(path)}, {"types", type_counts}};
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : f.metadata()) meta[k] = value_text(v);
    out["metadata"] = meta;
    out["provenance"] = gguf_provenance(f);
    if (config) out["features"] = model::family_features(*config);
    if (!args.count("no-tensors")) {
      out["tensors"] = nlohmann::ordered_json::array();
      for (const auto& t : f.tensors())
        if (filter.empty() || fnmatch(filter.c_str(), t.name.c_str(), 0) == 0)
          out["tensors"].push_back({{"name", t.name}, {"type", io::ggml_type_size(t.type)->name}, {"dims", t.dims}, {"bytes", t.nbytes}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "path:         " << path.string() << " (GGUF v" << f.version() << ")\n"
            << "parameters:   " << with_commas(params) << "\ntypes:        ";
  bool first = true;
  for (const auto& [d, n] : type_counts) {
    std::cout << (first ? "" : ", ") << d << " (" << n << " tensors)";
    first = false;
  }
  std::cout << "\nsize on disk: " << human_bytes(static_cast<double>(std::filesystem::file_size(path))) << "\n";
  if (config) {
    std::cout << "architecture: " << config->model_type << " (GGUF " << config->arch->gguf_arch << "), "
              << config->num_layers << " layers\n";
    print_features(*config);
  }
  print_provenance(gguf_provenance(f));
  std::cout << "metadata:\n";
  for (const auto& [k, v] : f.metadata()) std::printf("  %-40s %s\n", k.c_str(), value_text(v).c_str());
  if (args.count("no-tensors")) return 0;
  std::cout << "tensors:\n";
  for (const auto& t : f.tensors()) {
    if (!filter.empty() && fnmatch(filter.c_str(), t.name.c_str(), 0) != 0) continue;
    std::vector<int64_t> dims(t.dims.begin(), t.dims.end());
    std::printf("  %-32s %-7s %-14s %10s\n", t.name.c_str(), io::ggml_type_size(t.type)->name, shape_text(dims).c_str(),
                human_bytes(static_cast<double>(t.nbytes)).c_str());
  }
  return 0;
}

}  // namespace

int run_inspect(int argc, char** argv) {
  cxxopts::Options options(argv[0], "Show a model directory's, .safetensors or .gguf file's architecture, parameter "
                                    "count, dtypes, size on disk and tensors.");
  options.positional_help("PATH");
  options.add_options()
      ("path", "model directory, .safetensors or .gguf file", cxxopts::value<std::string>())
      ("filter", "only tensors whose name matches this glob, e.g. '*.layers.0.*'", cxxopts::value<std::string>())
      ("no-tensors", "omit the tensor table")
      ("json", "machine-readable output")
      ("h,help", "show this help");
  options.parse_positional({"path"});
  auto parsed = parse_command(options, argc, argv, {{"path", "PATH"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  auto path = existing_path(args["path"].as<std::string>(), "model path");

  if (model::is_gguf_file(path)) return inspect_gguf(path, args);
  io::Checkpoint ckpt(path);
  std::optional<model::ModelConfig> config;
  if (std::filesystem::is_directory(path) && std::filesystem::exists(path / "config.json"))
    config = model::ModelConfig::load(path);
  const std::string filter = args.count("filter") ? args["filter"].as<std::string>() : "";

  int64_t params = 0;
  std::map<std::string, int64_t> dtype_counts;
  uint64_t disk = 0;
  for (const auto& shard : ckpt.shards()) disk += std::filesystem::file_size(shard->path());
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  std::vector<const io::TensorView*> shown;
  for (const auto& name : ckpt.names()) {
    const auto& t = ckpt.get(name);
    params += t.spec.numel();
    dtype_counts[std::string(io::dtype_name(t.spec.dtype))]++;
    if (!filter.empty() && fnmatch(filter.c_str(), name.c_str(), 0) != 0) continue;
    shown.push_back(&t);
  }

  if (args.count("json")) {
    nlohmann::ordered_json out;
    out["path"] = path.string();
    if (config) {
      out["model_type"] = config->model_type;
      out["layers"] = config->num_layers;
      out["hidden_size"] = config->hidden_size;
      out["vocab_size"] = config->vocab_size;
      out["features"] = model::family_features(*config);
    }
    out["parameters"] = params;
    out["dtypes"] = dtype_counts;
    out["size_on_disk"] = disk;
    out["shards"] = ckpt.shards().size();
    if (std::filesystem::is_directory(path)) out["provenance"] = card_provenance(path);
    for (const auto* t : shown)
      tensors.push_back({{"name", t->name()}, {"dtype", io::dtype_name(t->spec.dtype)}, {"shape", t->spec.shape},
                         {"bytes", t->bytes.size()}, {"file", t->file.filename().string()}});
    if (!args.count("no-tensors")) out["tensors"] = tensors;
    std::cout << out.dump(2) << "\n";
    return 0;
  }

  std::cout << "path:         " << path.string() << "\n";
  if (config) {
    const auto& c = *config;
    std::cout << "architecture: " << c.model_type << " (" << c.arch->hf_class << "), " << c.num_layers
              << " layers, hidden " << c.hidden_size << ", heads " << c.num_heads << " (" << c.num_kv_heads
              << " kv), head_dim " << c.head_dim << ", ffn " << c.intermediate_size;
    if (c.num_experts) std::cout << " x " << c.num_experts << " experts (top " << c.num_experts_per_tok << ")";
    std::cout << ", vocab " << c.vocab_size << ", context " << c.max_position_embeddings
              << (c.tie_word_embeddings ? ", tied embeddings" : "") << ", rope theta " << c.rope.theta
              << (c.rope.type != "default" ? " (" + c.rope.type + ")" : "") << "\n";
    print_features(c);
  }
  std::cout << "parameters:   " << with_commas(params) << "\n"
            << "dtypes:       ";
  bool first = true;
  for (const auto& [d, n] : dtype_counts) {
    std::cout << (first ? "" : ", ") << d << " (" << n << " tensors)";
    first = false;
  }
  std::cout << "\nsize on disk: " << human_bytes(static_cast<double>(disk)) << " in " << ckpt.shards().size()
            << (ckpt.shards().size() == 1 ? " file" : " shards") << "\n";
  if (std::filesystem::is_directory(path)) print_provenance(card_provenance(path));
  if (args.count("no-tensors")) return 0;
  std::cout << "tensors:      " << shown.size() << (filter.empty() ? "" : " matching '" + filter + "'") << "\n";
  size_t width = 4;
  for (const auto* t : shown) width = std::max(width, t->name().size());
  for (const auto* t : shown)
    std::printf("  %-*s  %-5s %-14s %10s\n", static_cast<int>(width), t->name().c_str(),
                std::string(io::dtype_name(t->spec.dtype)).c_str(), shape_text(t->spec.shape).c_str(),
                human_bytes(static_cast<double>(t->bytes.size())).c_str());
  return 0;
}

}  // namespace anvil::cli
