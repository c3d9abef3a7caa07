#include "merge/merge.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <atomic>
#include <cstring>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/mapped_file.h"
#include "merge/block_kernel.h"
#include "merge/merge_method.h"
#include "merge/merge_source.h"
#include "model/config.h"
#include "model/gguf_names.h"
#include "model/tensor_bridge.h"
#include "util/error.h"

namespace anvil::merge {
namespace fs = std::filesystem;
namespace {

struct Model {
  fs::path path;
  std::unique_ptr<MergeSource> source;  // safetensors, GGUF or INT: Hugging Face names either way
  const model::ModelConfig& config() const { return source->config(); }
};

struct PlannedInput {
  const Model* model;
  std::string tensor_name;
  std::map<std::string, double> params;
  bool is_base;
};

struct PlannedTensor {
  std::string out_name;
  std::vector<int64_t> shape;
  std::vector<PlannedInput> inputs;
  std::map<std::string, double> params;
};

// FNV-1a: a per-tensor seed that is the same on every platform and for any thread schedule.
uint64_t tensor_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string method_list() {
  std::string s;
  for (auto n : merge_method_names()) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

std::string dtype_config_name(at::ScalarType t) {
  return t == at::kBFloat16 ? "bfloat16" : t == at::kHalf ? "float16" : "float32";
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

class Planner {
 public:
  Planner(const MergeConfig& config, const MergeMethod& method, std::map<std::string, std::unique_ptr<Model>>& models,
          GradientRule gradient_rule)
      : config_(config), method_(method), models_(models), gradient_rule_(gradient_rule) {}

  std::vector<PlannedTensor> plan(int64_t* layers_out) {
    std::vector<PlannedTensor> pre, layers, post;
    const OutputSlice& first = config_.slices.front();
    const OutputSlice& last = config_.slices.back();
    // Non-layer tensors come from the first slice's models (embeddings) or the last slice's (final
    // norm and LM head), as in mergekit; a gradient is evaluated at t = 0 for both (mergekit's
    // plan_module since 2025-03), or at t = 1 for the last slice's under the legacy rule.
    const double post_t = gradient_rule_ == GradientRule::Legacy ? 1.0 : 0.0;
    const Model& ref = model(first.sources.front().path);
    const model::Architecture& arch = *ref.config().arch;
    for (const auto& name : ref.source->names()) {
      if (model::split_layer_name(arch, name)) continue;
      const auto role = model::parse_hf_name(arch, name);
      bool is_pre = role && role->role == model::TensorRole::TokenEmbedding;
      const OutputSlice& slice = is_pre ? first : last;
      (is_pre ? pre : post).push_back(plan_tensor(slice, name, name, -1, is_pre ? 0.0 : post_t));
    }
    int64_t out_layer = 0;
    for (const auto& slice : config_.slices) {
      int64_t len = -1;
      for (const auto& src : slice.sources) {
        auto [b, e] = range(src);
        if (len >= 0 && e - b != len)
          fail(config_.source.string(), "all sources of a slice must have the same number of layers");
        len = e - b;
      }
      for (int64_t i = 0; i < len; ++i, ++out_layer) {
        double t = len > 1 ? static_cast<double>(i) / static_cast<double>(len - 1) : 1.0;
        const auto& src0 = slice.sources.front();
        int64_t in_layer = range(src0).first + i;
        layer_origins_.push_back({&model(src0.path), in_layer});
        for (const auto& name : model(src0.path).source->names()) {
          const auto split = model::split_layer_name(arch, name);
          if (!split || split->layer != in_layer) continue;
          layers.push_back(
              plan_tensor(slice, model::layer_prefix(arch, out_layer) + split->suffix, split->suffix, i, t));
        }
      }
    }
    *layers_out = out_layer;
    std::vector<PlannedTensor> all;
    for (auto* part : {&pre, &layers, &post})
      for (auto& p : *part) all.push_back(std::move(p));
    return all;
  }

 // Where each output layer comes from (the first source of its slice), for per-layer config keys.
  const std::vector<std::pair<const Model*, int64_t>>& layer_origins() const { return layer_origins_; }

 private:
  std::vector<std::pair<const Model*, int64_t>> layer_origins_;
  const Model& model(const fs::path& p) const { return *models_.at(p.string()); }

  std::pair<int64_t, int64_t> range(const InputSlice& src) const {
    int64_t n = model(src.path).config().num_layers;
    auto r = src.layer_range.value_or(std::make_pair(int64_t{0}, n));
    if (r.second > n)
      fail(config_.source.string(), "layer_range [" + std::to_string(r.first) + ", " + std::to_string(r.second) +
                                        "] exceeds the " + std::to_string(n) + " layers of " + src.model);
    return r;
  }

  double required_or_default(const ParamDef& def, const std::optional<ParamValue>& value, const std::string& what) const {
    if (value) {
      if (!std::holds_alternative<double>(*value))
        fail(config_.source.string(), "parameter '" + def.name + "' " + what + " must be a number");
      return std::get<double>(*value);
    }
    if (!def.default_value) fail(config_.source.string(), "missing required parameter '" + def.name + "' " + what);
    return *def.default_value;
  }

  // `name_or_suffix` is the full tensor name for non-layer tensors (layer_offset < 0), else the
  // part after the layer prefix ("model.layers.N.").
  PlannedTensor plan_tensor(const OutputSlice& slice, const std::string& out_name, const std::string& name_or_suffix,
                            int64_t layer_offset, double t) {
    PlannedTensor p;
    p.out_name = out_name;
    ParameterReader global(config_, &slice, out_name, t);
    for (const auto& def : method_.parameters())
      p.params[def.name] = required_or_default(def, global.get(def.name), "(for " + out_name + ")");
    std::vector<const InputSlice*> sources;
    for (const auto& s : slice.sources) sources.push_back(&s);
    for (const InputSlice* src : sources) {
      const Model& m = model(src->path);
      std::string in_name = layer_offset < 0 ? name_or_suffix
                                             : model::layer_prefix(*m.config().arch, range(*src).first + layer_offset) +
                                                   name_or_suffix;
      const std::vector<int64_t>* shape = m.source->shape(in_name);
      if (!shape) fail(src->path.string(), "tensor '" + in_name + "' is missing (needed for " + out_name + ")");
      if (p.shape.empty()) p.shape = *shape;
      else if (*shape != p.shape)
        fail(src->path.string(), "tensor '" + in_name + "' has shape " + shape_text(*shape) +
                                     ", other models have " + shape_text(p.shape));
      PlannedInput in{&m, in_name, {}, config_.base_model && src->path.string() == *config_.base_model};
      ParameterReader reader(config_, &slice, in_name, t);
      const std::string key = src->path.string();
      for (const auto& def : method_.tensor_parameters()) {
        auto v = reader.get(def.name, &key);
        ParamDef d = def;
        if (in.is_base && !d.default_value) d.default_value = 0.0;  // the base needs no weight
        in.params[def.name] = required_or_default(d, v, "for model " + src->model + " (" + in_name + ")");
      }
      p.inputs.push_back(std::move(in));
    }
    MergeTask probe{out_name, {}, p.params, 0};
    for (const auto& in : p.inputs) probe.inputs.push_back(MergeInput{{}, in.params, in.is_base});
    method_.check(probe);
    return p;
  }

  const MergeConfig& config_;
  const MergeMethod& method_;
  std::map<std::string, std::unique_ptr<Model>>& models_;
  GradientRule gradient_rule_;
};

// Same architecture, tensor names and shapes: listed as the first few differences.
void check_compatible(const std::vector<const Model*>& models, bool require_same_names) {
  const Model& a = *models.front();
  for (const Model* b : models) {
    if (b == &a) continue;
    if (b->config().model_type != a.config().model_type)
      fail(b->path.string(), "architecture '" + b->config().model_type + "' differs from " + a.path.string() + "'s '" +
                                 a.config().model_type + "'");
    if (!require_same_names) continue;
    std::vector<std::string> diffs;
    for (const auto& name : a.source->names()) {
      const auto* sb = b->source->shape(name);
      if (!sb) diffs.push_back("'" + name + "' missing");
      else if (*sb != *a.source->shape(name))
        diffs.push_back("'" + name + "' " + shape_text(*sb) + " vs " + shape_text(*a.source->shape(name)));
    }
    for (const auto& name : b->source->names())
      if (!a.source->shape(name)) diffs.push_back("'" + name + "' extra");
    if (!diffs.empty()) {
      std::string list;
      for (size_t i = 0; i < diffs.size() && i < 3; ++i) list += (i ? "; " : "") + diffs[i];
      if (diffs.size() > 3) list += "; and " + std::to_string(diffs.size() - 3) + " more";
      fail(b->path.string(), "does not match " + a.path.string() + ": " + list);
    }
  }
}

// The per-layer keys of a merged config, each output layer keeping its source layer's kind
// (windowed or global attention, dense or sparse FFN), so passthrough slices of Gemma 2/3 or a
// MoE stay the models they were cut from.
void write_layer_keys(nlohmann::ordered_json& cfg, const std::vector<std::pair<const Model*, int64_t>>& origins,
                      const fs::path& where) {
  bool sliding = false, sparse = false;
  for (const auto& [m, layer] : origins) {
    sliding |= !m->config().sliding_layers.empty();
    sparse |= !m->config().sparse_layers.empty();
  }
  if (sliding || (cfg.contains("layer_types") && cfg["layer_types"].is_array())) {
    auto& types = cfg["layer_types"] = nlohmann::ordered_json::array();
    for (const auto& [m, layer] : origins)
      types.push_back((m->config().sliding_layers.empty() ? m->config().layer_is_sliding(layer)
                                                          : m->config().sliding_layers[static_cast<size_t>(layer)])
                          ? "sliding_attention"
                          : "full_attention");
    cfg.erase("sliding_window_pattern");
  }
  if (!sparse) return;
  if (origins.front().first->config().arch->shared_experts == model::SharedExperts::Plain) {  // DeepSeekMoE: dense layers lead
    int64_t dense = 0;
    while (dense < static_cast<int64_t>(origins.size()) && !origins[dense].first->config().layer_is_sparse(origins[dense].second)) ++dense;
    for (size_t i = static_cast<size_t>(dense); i < origins.size(); ++i)
      if (!origins[i].first->config().layer_is_sparse(origins[i].second))
        fail(where.string(), "the slices put a dense layer after a sparse one, which DeepSeekMoE's config cannot say");
    cfg["first_k_dense_replace"] = dense;
  } else {  // Qwen2-MoE: the dense layers by index
    auto& dense = cfg["mlp_only_layers"] = nlohmann::ordered_json::array();
    for (size_t i = 0; i < origins.size(); ++i)
      if (!origins[i].first->config().layer_is_sparse(origins[i].second)) dense.push_back(i);
    cfg["decoder_sparse_step"] = 1;
  }
}

// config.json of the merged model: the base's, with the merge's layers and dtype.
std::string merged_config_json(const MergeConfig& config, const Model& base, int64_t layers,
                               const std::vector<std::pair<const Model*, int64_t>>& origins, at::ScalarType out_dtype) {
  auto cfg = base.source->hf_config();
  cfg["num_hidden_layers"] = layers;
  if (cfg.contains("torch_dtype")) cfg["torch_dtype"] = dtype_config_name(out_dtype);
  if (cfg.contains("dtype") || !cfg.contains("torch_dtype")) cfg["dtype"] = dtype_config_name(out_dtype);
  write_layer_keys(cfg, origins, config.source);
  return cfg.dump(2) + "\n";
}

void write_model_files(const MergeConfig& config, const Model& base, const Model& tokenizer_model, int64_t layers,
                       const std::vector<std::pair<const Model*, int64_t>>& origins, at::ScalarType out_dtype,
                       const fs::path& dir) {
  io::write_text_file(dir / "config.json", merged_config_json(config, base, layers, origins, out_dtype));
  tokenizer_model.source->write_tokenizer_files(dir);
  if (fs::is_directory(base.path) && fs::exists(base.path / "generation_config.json"))
    fs::copy_file(base.path / "generation_config.json", dir / "generation_config.json");
  fs::copy_file(config.source, dir / "anvil_merge_config.yaml");
}

}  // namespace

MergeSummary run_merge(const MergeConfig& config, const fs::path& out_dir, const MergeOptions& options) {
  auto t0 = std::chrono::steady_clock::now();
  const MergeMethod* method = find_merge_method(config.merge_method);
  if (!method)
    fail(config.source.string(), "unknown merge_method '" + config.merge_method + "' (supported: " + method_list() + ")");
  if (method->needs_base_model() && !config.base_model)
    fail(config.source.string(), config.merge_method + " needs base_model");
  if (config.tokenizer_source && *config.tokenizer_source == "union")
    fail(config.source.string(), "tokenizer_source: union is not supported (use base or a model path)");
  at::Device device = options.device == "cuda" ? at::Device(at::kCUDA) : at::Device(at::kCPU);
  if (device.is_cuda() && !at::hasCUDA()) fail("device cuda", "no CUDA device available");

  MergeConfig cfg = config;
  if (cfg.from_models && cfg.base_model && method->base_is_input()) {
    auto& sources = cfg.slices.front().sources;
    bool listed = false;
    for (const auto& s : sources) listed |= s.path.string() == *cfg.base_model;
    if (!listed) sources.push_back(InputSlice{*cfg.base_model, *cfg.base_model, std::nullopt, {}});
  }
  if (method->name() == "passthrough")
    for (const auto& s : cfg.slices)
      if (s.sources.size() != 1) fail(cfg.source.string(), "passthrough takes exactly one source per slice");

  // Open every model once (memory-mapped, headers validated) before any work.
  std::map<std::string, std::unique_ptr<Model>> models;
  auto open = [&](const fs::path& p) -> Model& {
    auto& slot = models[p.string()];
    if (!slot) slot = std::make_unique<Model>(Model{p, MergeSource::open(p)});
    return *slot;
  };
  std::vector<const Model*> inputs;
  for (const auto& slice : cfg.slices)
    for (const auto& src : slice.sources) inputs.push_back(&open(src.path));
  const Model& base = cfg.base_model ? open(*cfg.base_model) : *inputs.front();
  inputs.push_back(&base);
  check_compatible(inputs, cfg.from_models);
  const Model* tokenizer_model = &base;
  if (cfg.tokenizer_source && *cfg.tokenizer_source != "base") {
    fs::path p = *cfg.tokenizer_source;
    if (!fs::is_directory(p) && fs::is_directory(cfg.source.parent_path() / p)) p = cfg.source.parent_path() / p;
    if (!fs::is_directory(p)) fail(cfg.source.string(), "tokenizer_source '" + *cfg.tokenizer_source + "' is not a directory");
    tokenizer_model = &open(fs::absolute(p).lexically_normal());
  }

  int64_t layers = 0;
  Planner planner(cfg, *method, models, options.gradient_rule);
  std::vector<PlannedTensor> plan = planner.plan(&layers);

  std::string dtype_name = options.out_dtype ? *options.out_dtype
                           : cfg.out_dtype   ? *cfg.out_dtype
                           : cfg.dtype       ? *cfg.dtype
                                             : base.config().dtype;
  at::ScalarType out_dtype = model::parse_float_dtype(dtype_name);

  std::vector<io::TensorSpec> specs;
  for (const auto& p : plan) specs.push_back({p.out_name, model::from_scalar_type(out_dtype), p.shape});

  // A directory of shards, or one GGUF file encoded tensor by tensor from the merged bytes (its
  // config, tokenizer and card in a scratch directory that is never committed).
  const bool gguf = options.to_gguf.has_value(), memory = static_cast<bool>(options.to_memory);
  std::string gguf_type;
  std::optional<io::AtomicDir> out, scratch;
  std::optional<io::ShardedWriter> writer;
  std::optional<quant::HfGgufStream> stream;
  if (gguf) {
    scratch.emplace(out_dir.string() + ".files");
    write_model_files(cfg, base, *tokenizer_model, layers, planner.layer_origins(), out_dtype, scratch->temp_path());
    if (options.before_commit) options.before_commit(scratch->temp_path(), 0);
    quant::GgufExportOptions g = *options.to_gguf;
    g.threads = options.threads;
    if (g.type.empty())  // the merge's dtype, as llama.cpp's converter writes a float model
      g.type = out_dtype == at::kBFloat16 ? "BF16" : out_dtype == at::kHalf ? "F16" : "F32";
    gguf_type = g.type;
    if (g.name.empty()) g.name = out_dir.stem().string();
    stream.emplace(scratch->temp_path(), specs, out_dir, g);
  } else if (!memory) {
    out.emplace(out_dir);
    writer.emplace(out->temp_path(), specs, options.max_shard_bytes);
  }
  std::atomic<int64_t> done{0};
  std::atomic<uint64_t> bytes{0};
  std::mutex progress_mutex;
  auto merge_one = [&](size_t i) {
    c10::InferenceMode guard;
    const PlannedTensor& p = plan[i];
    const int64_t numel = io::TensorSpec{"", io::DType::F32, p.shape}.numel();
    const int64_t rows = p.shape.empty() ? 1 : p.shape[0];
    const int64_t row_elems = rows > 0 ? numel / rows : 0;
    // Chunk boundaries depend only on the shape and chunk_elements, so seeded methods give the
    // same bytes for any thread count.
    const int64_t kChunkElements = std::max<int64_t>(1, options.chunk_elements);
    const int64_t rows_per_chunk =
        method->chunkable() && p.shape.size() >= 2 ? std::max<int64_t>(1, kChunkElements / std::max<int64_t>(row_elems, 1))
                                                   : rows;
    const int64_t n_chunks = rows == 0 ? 1 : (rows + rows_per_chunk - 1) / rows_per_chunk;
    const uint64_t out_row_bytes = static_cast<uint64_t>(row_elems) * at::elementSize(out_dtype);
    // For a GGUF or memory, the whole merged tensor is gathered (in the output dtype) and handed over at once.
    const bool gather = gguf || memory;
    std::vector<uint8_t> whole(gather ? static_cast<size_t>(numel) * at::elementSize(out_dtype) : 0);
    auto emit = [&](uint64_t offset, std::span<const uint8_t> part) {
      if (gather) std::memcpy(whole.data() + offset, part.data(), part.size());
      else writer->write_part(p.out_name, offset, part);
    };

    // Rows of chunk c (a tensor without rows is one chunk of its elements).
    auto chunk_row0 = [&](int64_t c) { return n_chunks > 1 ? c * rows_per_chunk : 0; };
    auto chunk_rows = [&](int64_t c) { return n_chunks > 1 ? std::min(rows_per_chunk, rows - c * rows_per_chunk) : rows; };
    auto load_chunk = [&](int64_t c) {
      MergeTask task{p.out_name, {}, p.params, tensor_seed(options.seed, p.out_name) + static_cast<uint64_t>(c)};
      for (const auto& in : p.inputs) {
        at::Tensor t = in.model->source->read_rows(in.tensor_name, chunk_row0(c), chunk_rows(c));
        task.inputs.push_back(MergeInput{t.to(device), in.params, in.is_base});
      }
      return task;
    };
    auto release_chunk = [&](int64_t c) {
      for (const auto& in : p.inputs) in.model->source->release_rows(in.tensor_name, chunk_row0(c), chunk_rows(c));
    };

    // Inputs' stored bytes for the rows of chunk c (the block-kernel fast path reads them directly).
    auto chunk_bytes = [&](int64_t c) {
      std::vector<CombineInput> ins;
      const int64_t first = n_chunks > 1 ? c * rows_per_chunk * row_elems : 0;
      for (const auto& in : p.inputs) {
        const io::TensorView& view = *in.model->source->plain(in.tensor_name);
        ins.push_back({view.bytes.data() + first * static_cast<int64_t>(io::dtype_size(view.spec.dtype)), view.spec.dtype});
      }
      return ins;
    };
    auto chunk_elements = [&](int64_t c) {
      return n_chunks > 1 ? std::min(rows_per_chunk, rows - c * rows_per_chunk) * row_elems : numel;
    };
    MergeTask probe{p.out_name, {}, p.params, 0};
    bool fusable = device.is_cpu();
    for (const auto& in : p.inputs) {
      probe.inputs.push_back(MergeInput{{}, in.params, in.is_base});
      const io::TensorView* plain = in.model->source->plain(in.tensor_name);
      fusable &= plain && can_fuse(plain->spec.dtype);
    }
    std::unique_ptr<BlockKernel> kernel = fusable ? method->block_kernel(probe) : nullptr;

    std::vector<double> stats(method->statistics_size(p.inputs.size()), 0.0);
    const int passes = method->statistics_passes(probe);
    // Between passes the pages of a tensor up to 64 MB per input stay mapped: dropping them only
    // to fault them in again costs more kernel time than the memory is worth.
    uint64_t largest_input = 0;
    for (const auto& in : p.inputs)
      largest_input = std::max<uint64_t>(largest_input, in.model->source->stored_bytes(in.tensor_name));
    const bool keep_pages = largest_input <= (64ull << 20);
    for (int pass = 0; pass < passes; ++pass)
      for (int64_t c = 0; c < n_chunks; ++c) {
        if (kernel) run_statistics(*kernel, chunk_bytes(c), chunk_elements(c), pass, stats);
        else method->accumulate(load_chunk(c), pass, stats);
        if (!keep_pages) release_chunk(c);
      }
    // Linear combinations (some known only after the statistics) run on blocks too.
    probe.stats = passes > 0 ? &stats : nullptr;
    std::optional<LinearForm> form = fusable && !kernel ? method->linear_form(probe) : std::nullopt;
    if (form) kernel = linear_kernel(*form);
    if (kernel) {
      const io::DType out_io = model::from_scalar_type(out_dtype);
      std::vector<uint8_t> buffer;
      for (int64_t c = 0; c < n_chunks; ++c) {
        const int64_t n = chunk_elements(c);
        buffer.resize(static_cast<size_t>(n) * io::dtype_size(out_io));
        run_merge(*kernel, chunk_bytes(c), n, out_io, buffer.data(), passes > 0 ? &stats : nullptr);
        emit(n_chunks > 1 ? static_cast<uint64_t>(c * rows_per_chunk) * out_row_bytes : 0, buffer);
        release_chunk(c);
        bytes += buffer.size();
      }
    }
    for (int64_t c = 0; c < n_chunks && !kernel; ++c) {
      MergeTask task = load_chunk(c);
      if (passes > 0) task.stats = &stats;
      at::Tensor result = method->merge(task).to(at::kCPU, out_dtype).contiguous();
      uint64_t offset = n_chunks > 1 ? static_cast<uint64_t>(c * rows_per_chunk) * out_row_bytes : 0;
      emit(offset, std::span<const uint8_t>(static_cast<const uint8_t*>(result.data_ptr()), result.nbytes()));
      release_chunk(c);
      bytes += result.nbytes();
    }
    if (gguf) stream->write(p.out_name, whole);
    if (memory) options.to_memory(io::TensorSpec{p.out_name, model::from_scalar_type(out_dtype), p.shape}, whole);
    int64_t d = ++done;
    if (options.progress) {
      std::lock_guard lock(progress_mutex);
      options.progress(d, static_cast<int64_t>(plan.size()), bytes.load());
    }
  };
  if (options.threads > 1 && device.is_cpu()) {
    tbb::task_arena arena(options.threads);
    arena.execute([&] {
      tbb::parallel_for(size_t{0}, plan.size(), [&](size_t i) {
        at::set_num_threads(1);
        merge_one(i);
      });
    });
  } else {
    for (size_t i = 0; i < plan.size(); ++i) merge_one(i);
  }
  MergeSummary s;
  if (gguf) {
    const auto g = stream->commit();
    s.bytes_written = g.output_bytes;
    s.shards = 1;
    s.gguf_notes = g.notes;
    s.gguf_type = gguf_type;
  } else if (memory) {
    s.config_json = merged_config_json(cfg, base, layers, planner.layer_origins(), out_dtype);
    s.bytes_written = bytes;
  } else {
    writer->commit();
    write_model_files(cfg, base, *tokenizer_model, layers, planner.layer_origins(), out_dtype, out->temp_path());
    if (options.before_commit) options.before_commit(out->temp_path(), bytes.load());
    out->commit();
    s.bytes_written = bytes;
    s.shards = writer->shard_count();
  }
  s.tensors = static_cast<int64_t>(plan.size());
  s.layers = layers;
  s.out_dtype = dtype_config_name(out_dtype);
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

}  // namespace anvil::merge
