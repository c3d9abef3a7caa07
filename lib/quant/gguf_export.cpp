#include "quant/gguf_export.h"

#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "io/mapped_file.h"
#include "model/config.h"
#include "model/gguf_tensors.h"
#include "model/gguf_names.h"
#include "model/gguf_hparams.h"
#include "model/tensor_transforms.h"
#include "model/tensor_shapes.h"
#include "quant/quant_mix.h"
#include "chat/chat_template.h"
#include "io/model_card.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace anvil::quant {
namespace fs = std::filesystem;
namespace {

using Metadata = std::vector<std::pair<std::string, io::GgufValue>>;

// One tensor to write: where its floats come from and what it becomes.
struct Job {
  io::GgufTensorInfo info;  // GGUF name, dims, output type
  // Decodes rows [row0, row0 + rows) in GGUF row layout: tensors stream in row chunks, so memory
  // stays near a few chunks however large the tensor.
  std::function<void(int64_t row0, int64_t rows, float* out)> read_rows;
  uint64_t input_bytes = 0;
  // From a Hugging Face directory, the HF tensors behind the rows: one, or one per expert of a
  // stack (each `slice_rows` rows), so that calibration applies to each expert on its own.
  std::vector<std::string> hf_names;
  int64_t slice_rows = 0;  // rows per matrix: a 3-D expert stack has one matrix per expert
  std::vector<const float*> importance;  // per matrix (one value per column), when given
};

int64_t row_count(const Job& j) {
  return j.info.dims[0] ? static_cast<int64_t>(j.info.numel() / j.info.dims[0]) : 0;
}

// The job's importance per matrix, from the entry under its GGUF name (cols x matrices, as
// llama-imatrix stores a stack). A missing entry leaves the tensor to the plain encoders, as in
// llama-quantize; one of another size is an error there too (except for token_embd, which
// llama-imatrix never measures).
void attach_importance(Job& j, const GgufExportOptions& options) {
  const int64_t rows = row_count(j), cols = static_cast<int64_t>(j.info.dims[0]);
  if (j.slice_rows <= 0) j.slice_rows = rows;
  if (!options.importance || rows == 0) return;
  auto it = options.importance->find(j.info.name);
  if (it == options.importance->end()) return;
  const int64_t matrices = rows / j.slice_rows;
  if (static_cast<int64_t>(it->second.size()) != cols * matrices) {
    if (j.info.name == "token_embd.weight") return;
    fail(options.imatrix_file.empty() ? "importance matrix" : options.imatrix_file,
         "entry '" + j.info.name + "' has " + std::to_string(it->second.size()) + " values; the tensor needs " +
             std::to_string(cols * matrices) + " (" + std::to_string(matrices) + " x " + std::to_string(cols) +
             " columns): made for another model?");
  }
  for (int64_t m = 0; m < matrices; ++m) j.importance.push_back(it->second.data() + m * cols);
}

// gguf-py's model_weight_count_rounded_notation: at least two significant digits.
std::string rounded_count(int64_t n) {
  double scaled;
  const char* suffix;
  if (n > 1e12) scaled = n * 1e-12, suffix = "T";
  else if (n > 1e9) scaled = n * 1e-9, suffix = "B";
  else if (n > 1e6) scaled = n * 1e-6, suffix = "M";
  else scaled = n * 1e-3, suffix = "K";
  // Python's round() is round-half-even; the digit count of the rounded integer part decides.
  const std::string whole = std::to_string(static_cast<long long>(std::nearbyint(scaled)));
  const size_t leading_zeros = whole.find_first_not_of('0') == std::string::npos ? whole.size() : whole.find_first_not_of('0');
  const int digits = static_cast<int>(whole.size() - leading_zeros);
  const int fix = std::max(2 - digits, 0);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f%s", fix, scaled, suffix);
  return buf;
}

// Provenance for GGUF readers (llama.cpp's general.* keys): the source's own card gives the
// license, base models and tags; anvil adds itself as the quantizer.
void provenance_metadata(Metadata& m, const fs::path& input, const QuantMix& mix, int64_t params, int64_t expert_params,
                         int64_t experts, const GgufExportOptions& options) {
  auto set = [&](const std::string& key, io::GgufValue v) {
    for (auto& kv : m)
      if (kv.first == key) {
        kv.second = std::move(v);
        return;
      }
    m.emplace_back(key, std::move(v));
  };
  const std::string name =
      options.name.empty() ? fs::absolute(input).lexically_normal().filename().string() : options.name;
  if (!model::is_gguf_file(input)) set("general.basename", io::GgufValue::str(name));
  set("general.size_label", io::GgufValue::str(gguf_size_label(params, expert_params, experts)));
  const bool quantized = mix.quantized();
  if (quantized) set("general.quantized_by", io::GgufValue::str("anvil"));
  std::vector<io::GgufValue> tags{io::GgufValue::str("anvil")};
  if (const auto card = io::read_card_front(input)) {
    if (card->license) set("general.license", io::GgufValue::str(*card->license));
    if (!card->base_model.empty()) {
      set("general.base_model.count", io::GgufValue::u32(static_cast<uint32_t>(card->base_model.size())));
      for (size_t i = 0; i < card->base_model.size(); ++i) {
        const std::string& id = card->base_model[i];
        const std::string key = "general.base_model." + std::to_string(i) + ".";
        const size_t slash = id.find('/');
        // A Hub id "org/name": llama.cpp's converter splits it and links the repository.
        if (slash != std::string::npos && slash > 0 && id.find('/', slash + 1) == std::string::npos && id[0] != '.') {
          set(key + "name", io::GgufValue::str(id.substr(slash + 1)));
          set(key + "organization", io::GgufValue::str(id.substr(0, slash)));
          set(key + "repo_url", io::GgufValue::str("https://huggingface.co/" + id));
        } else {
          set(key + "name", io::GgufValue::str(id));
        }
      }
    }
    for (const auto& t : card->tags)
      if (t != "anvil") tags.push_back(io::GgufValue::str(t));
  }
  if (quantized) tags.push_back(io::GgufValue::str(std::string(mix.name)));
  set("general.tags", io::GgufValue::array(io::GgufType::STRING, std::move(tags)));
  if (options.importance && !options.importance->empty()) {
    // As llama-quantize records an importance matrix (tools/quantize/quantize.cpp): its strings
    // cut to 127 bytes (a key override's buffer), its counts u32.
    auto str127 = [](const std::string& v) { return io::GgufValue::str(v.substr(0, 127)); };
    if (!options.imatrix_file.empty()) set("quantize.imatrix.file", str127(options.imatrix_file));
    if (!options.imatrix_dataset.empty()) set("quantize.imatrix.dataset", str127(options.imatrix_dataset));
    set("quantize.imatrix.entries_count", io::GgufValue::u32(static_cast<uint32_t>(options.importance->size())));
    if (options.imatrix_chunks > 0)
      set("quantize.imatrix.chunks_count", io::GgufValue::u32(static_cast<uint32_t>(options.imatrix_chunks)));
  }
}

Metadata model_metadata(const model::ModelConfig& c, const std::string& name) {
  Metadata m{
      {"general.architecture", io::GgufValue::str(std::string(c.arch->gguf_arch))},
      {"general.name", io::GgufValue::str(name)},
  };
  for (auto& kv : model::write_gguf_hparams(c)) m.push_back(std::move(kv));
  return m;
}

// The bytes of a Hugging Face tensor by name, when a job reads its rows: the checkpoint's map for
// export_gguf, the merged tensor in memory for a one-pass merge.
using ViewOf = std::function<const io::TensorView&(const std::string& hf_name)>;

const QuantType& source_type(const io::TensorSpec& spec, const std::string& where) {
  const QuantType* t = spec.dtype == io::DType::F32    ? find_quant_type("F32")
                       : spec.dtype == io::DType::F16  ? find_quant_type("F16")
                       : spec.dtype == io::DType::BF16 ? find_quant_type("BF16")
                                                       : nullptr;
  if (!t) fail(where, "tensor '" + spec.name + "' has dtype " + std::string(io::dtype_name(spec.dtype)) +
                          "; only F32, F16 and BF16 can be converted");
  return *t;
}

// llama.cpp's 3-D expert tensor from the per-expert 2-D ones: dims {cols, rows, experts}.
Job expert_stack_job(const std::string& where, const std::string& name, const std::vector<const io::TensorSpec*>& experts,
                     const QuantMix& mix, const MixContext& ctx, const ViewOf& view_of) {
  for (size_t e = 0; e < experts.size(); ++e)
    if (!experts[e] || experts[e]->shape != experts[0]->shape || experts[e]->dtype != experts[0]->dtype ||
        experts[e]->shape.size() != 2)
      fail(where, name + ": expert " + std::to_string(e) + " is missing or differs in shape or dtype");
  const int64_t rows = experts[0]->shape[0], cols = experts[0]->shape[1];
  Job j;
  j.info.name = name;
  j.info.dims = {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows), experts.size()};
  j.info.type = choose_tensor_type(mix, ctx, name, cols, 3, find_quant_type("F32"))->ggml_type;
  j.slice_rows = rows;
  const QuantType& src = source_type(*experts[0], where);
  for (const auto* spec : experts) {
    j.input_bytes += static_cast<uint64_t>(src.row_bytes(cols) * rows);
    j.hf_names.push_back(spec->name);
  }
  j.read_rows = [names = j.hf_names, view_of, &src, rows, cols](int64_t row0, int64_t n, float* out) {
    const int64_t row_bytes = src.row_bytes(cols);
    while (n > 0) {  // one expert's run of rows at a time
      const int64_t e = row0 / rows, r = row0 % rows, take = std::min(n, rows - r);
      const io::TensorView& v = view_of(names[static_cast<size_t>(e)]);
      src.decode(v.bytes.data() + r * row_bytes, out, take * cols);
      io::release_pages(v.bytes.data() + r * row_bytes, static_cast<size_t>(take * row_bytes));
      row0 += take, n -= take, out += take * cols;
    }
  };
  return j;
}

// Jobs for a Hugging Face model: every tensor under its role's GGUF name, with the family's
// value transforms (q/k rotary rows, Gemma's norm offset), experts stacked.
std::vector<Job> hf_jobs(const std::vector<io::TensorSpec>& specs, const std::string& where, const model::ModelConfig& c,
                         const QuantMix& mix, const MixContext& ctx, const ViewOf& view_of) {
  std::vector<Job> jobs;
  std::map<std::string, std::vector<const io::TensorSpec*>> stacks;  // stacked name -> its experts
  for (const auto& spec : specs) {
    const std::string& hf = spec.name;
    const auto role = model::parse_hf_name(*c.arch, hf);
    if (!role) fail(where, "tensor '" + hf + "' has no llama.cpp name (unsupported for GGUF)");
    if (c.tie_word_embeddings && role->role == model::TensorRole::Output) continue;  // llama.cpp reuses token_embd
    if (role->layer >= c.num_layers)
      fail(where, "tensor '" + hf + "' belongs to a layer config.json does not have (" + std::to_string(c.num_layers) +
                      " layers)");
    if (model::is_expert(role->role)) {
      auto& experts = stacks[model::gguf_name_of(*role)];
      if (role->expert < 0 || role->expert >= c.num_experts)
        fail(where, "tensor '" + hf + "': expert index out of range (config.json: " + std::to_string(c.num_experts) +
                        " experts)");
      experts.resize(static_cast<size_t>(c.num_experts), nullptr);
      experts[static_cast<size_t>(role->expert)] = &spec;
      continue;
    }
    const std::string name = model::gguf_name_of(*role);
    Job j;
    j.info.name = name;
    j.info.dims.assign(spec.shape.rbegin(), spec.shape.rend());
    if (j.info.dims.empty()) j.info.dims = {1};  // a scalar: GGUF tensors have at least one dimension
    const int64_t row = static_cast<int64_t>(j.info.dims[0]);
    j.info.type = choose_tensor_type(mix, ctx, name, row, ggml_dimension_count(j.info.dims), find_quant_type("F32"))->ggml_type;
    const QuantType& src = source_type(spec, where);
    j.hf_names = {hf};
    j.slice_rows = row_count(j);
    j.input_bytes = static_cast<uint64_t>(src.row_bytes(row) * j.slice_rows);
    const model::GgufTransform transform = model::gguf_transform(c, role->role);
    const int64_t rows = row_count(j);
    j.read_rows = [hf, view_of, &src, transform, row, rows](int64_t row0, int64_t n, float* out) {
      const io::TensorView& v = view_of(hf);
      const int64_t row_bytes = src.row_bytes(row);
      if (transform.rotary_heads > 0) {
        for (int64_t r = 0; r < n; ++r)  // q/k: GGUF interleaves each head's rotary pairs
          src.decode(v.bytes.data() + model::hf_row_of_gguf_row(transform, row0 + r, rows) * row_bytes, out + r * row, row);
      } else {
        src.decode(v.bytes.data() + row0 * row_bytes, out, n * row);
        io::release_pages(v.bytes.data() + row0 * row_bytes, static_cast<size_t>(n * row_bytes));
      }
      model::add_gguf_offset(transform, out, n * row);
    };
    jobs.push_back(std::move(j));
  }
  for (const auto& [name, experts] : stacks) jobs.push_back(expert_stack_job(where, name, experts, mix, ctx, view_of));
  return jobs;
}

// Jobs for re-encoding a GGUF: same names and layout, new types.
std::vector<Job> gguf_jobs(const io::GgufFile& in, const QuantMix& mix, const MixContext& ctx) {
  std::vector<Job> jobs;
  for (const auto& t : in.tensors()) {
    const QuantType* src = find_quant_type(t.type);
    if (!src) fail(in.path().string(), "tensor '" + t.name + "' has a type anvil cannot dequantize");
    Job j;
    j.info.name = t.name;
    j.info.dims = t.dims;
    j.info.type = choose_tensor_type(mix, ctx, t.name, static_cast<int64_t>(t.dims[0]), ggml_dimension_count(t.dims),
                                     src->block_elements == 1 ? src : find_quant_type("F32"))->ggml_type;
    j.input_bytes = t.nbytes;
    if (t.dims.size() == 3) j.slice_rows = static_cast<int64_t>(t.dims[1]);  // one matrix per expert
    const int64_t row = static_cast<int64_t>(t.dims[0]);
    j.read_rows = [&t, src, row](int64_t row0, int64_t rows, float* out) {
      src->decode(t.data.data() + row0 * src->row_bytes(row), out, rows * row);
      io::release_pages(t.data.data() + row0 * src->row_bytes(row), static_cast<size_t>(rows * src->row_bytes(row)));
    };
    jobs.push_back(std::move(j));
  }
  return jobs;
}

// Rows of one tensor, encoded as one piece of work.
struct Chunk {
  size_t job;
  int64_t row0, rows;
};
constexpr int64_t kChunkElements = 1 << 20;  // 4 MB of floats: whole rows, about this many

// The reference encoders (importance-weighted where given); rows in parallel, whole blocks each.
std::vector<uint8_t> encode_rows(const QuantType& type, const float* w, int64_t rows, int64_t row,
                                 const float* importance) {
  std::vector<uint8_t> bytes(static_cast<size_t>(rows * type.row_bytes(row)));
  const bool weighted = importance && type.encode_weighted;
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, std::max<int64_t>(1, 65536 / row)),
                    [&](const tbb::blocked_range<int64_t>& r) {
                      if (!weighted)
                        return type.encode(w + r.begin() * row, bytes.data() + r.begin() * type.row_bytes(row),
                                           (r.end() - r.begin()) * row);
                      for (int64_t k = r.begin(); k < r.end(); ++k)  // the importance is per column
                        type.encode_weighted(w + k * row, bytes.data() + k * type.row_bytes(row), row, importance);
                    });
  return bytes;
}

// What a GGUF output will hold, planned before any tensor is read: metadata and one job per
// GGUF tensor.
struct Plan {
  Metadata meta;
  std::vector<Job> jobs;
  MixContext ctx;
  std::vector<std::string> notes;
};

// The plan for a Hugging Face model: config.json, tokenizer and card from `dir`, the tensors
// as `specs` say (their bytes come later, through `view_of`).
Plan plan_hf(const fs::path& dir, const std::vector<io::TensorSpec>& specs, const QuantMix& mix,
             const GgufExportOptions& options, const ViewOf& view_of) {
  Plan plan;
  const bool has_imatrix = options.importance && !options.importance->empty();
  auto c = model::ModelConfig::load(dir);
  const std::string where = (dir / "config.json").string();
  if (c.arch->gguf_arch.empty()) fail(dir.string(), "anvil cannot write " + c.model_type + " models to GGUF yet");
  std::map<std::string, const io::TensorSpec*> by_name;
  std::vector<std::string> names;
  for (const auto& spec : specs) by_name[spec.name] = &spec, names.push_back(spec.name);
  model::check_tensor_shapes(
      c,
      [&](const std::string& name) -> std::optional<std::vector<int64_t>> {
        auto it = by_name.find(name);
        if (it == by_name.end()) return std::nullopt;
        return it->second->shape;
      },
      names, where, "config.json");
  plan.ctx = {c.num_layers, c.num_heads, c.num_kv_heads, c.tie_word_embeddings || !by_name.count("lm_head.weight"),
              c.num_experts, has_imatrix};
  model::check_gguf_can_describe(c, where);
  plan.meta = model_metadata(c, options.name.empty() ? fs::absolute(dir).lexically_normal().filename().string() : options.name);
  auto tok = tokenizer::Tokenizer::load(dir);
  tok.check_fits_model(c.vocab_size, where);
  plan.notes = tokenizer::gguf_vocabulary_caveats(tok);
  for (auto& kv : tokenizer::gguf_tokenizer_metadata(tok, c.bos_token_id.value_or(-1),
                                                      c.eos_token_ids.empty() ? -1 : c.eos_token_ids[0],
                                                      c.pad_token_id.value_or(-1), c.vocab_size))
    plan.meta.push_back(std::move(kv));
  // The chat template travels with the vocabulary, as llama.cpp's converter writes it.
  if (const auto chat_template = chat::find_chat_template(dir))
    plan.meta.emplace_back("tokenizer.chat_template", io::GgufValue::str(chat_template->source));
  plan.jobs = hf_jobs(specs, dir.string(), c, mix, plan.ctx, view_of);
  if (c.rope.type == "llama3") {
    // llama.cpp's converter stores llama3 scaling as per-frequency divisors.
    auto divisors = std::make_shared<std::vector<float>>(model::llama3_rope_divisors(c.rope, c.rotary_dim));
    Job j;
    j.info.name = "rope_freqs.weight";
    j.info.dims = {divisors->size()};
    j.info.type = 0;
    j.read_rows = [divisors](int64_t, int64_t, float* out) { std::copy(divisors->begin(), divisors->end(), out); };
    plan.jobs.insert(plan.jobs.begin(), std::move(j));
  }
  return plan;
}

// The plan for re-encoding a GGUF: its metadata and tensors, new types.
Plan plan_gguf(const io::GgufFile& in, const QuantMix& mix, const GgufExportOptions& options) {
  Plan plan;
  auto c = model::ModelConfig::from_gguf(in);
  model::check_gguf_shapes(in, c);
  plan.ctx = {c.num_layers, c.num_heads, c.num_kv_heads, c.tie_word_embeddings, c.num_experts,
              options.importance && !options.importance->empty()};
  for (const auto& [k, v] : in.metadata())
    if (k != "general.file_type" && k != "general.quantization_version") plan.meta.emplace_back(k, v);
  plan.jobs = gguf_jobs(in, mix, plan.ctx);
  return plan;
}

// What every plan gets before its header is written: ggml's dimension counts, the importance
// matrix per matrix, notes on what cannot follow it, provenance and the file type.
void finish_plan(Plan& plan, const fs::path& input, const QuantMix& mix, bool from_gguf, const GgufExportOptions& options) {
  // llama-quantize writes each tensor with ggml's dimension count (trailing ones dropped); the
  // converter (an HF input to a float type) keeps the checkpoint's shape.
  if (mix.quantized() || from_gguf)
    for (auto& j : plan.jobs) j.info.dims.resize(ggml_dimension_count(j.info.dims));
  for (auto& j : plan.jobs) attach_importance(j, options);
  {
    // Q8_0 ignores an importance matrix in ggml too; other types without a weighted encoder here
    // would not match llama-quantize --imatrix: say so rather than differ silently.
    std::map<std::string, int> unweighted;
    for (const auto& j : plan.jobs) {
      const QuantType* t = find_quant_type(j.info.type);
      if (!j.importance.empty() && t && t->block_elements > 1 && !t->encode_weighted && t->name != "Q8_0")
        ++unweighted[std::string(t->name)];
    }
    for (const auto& [type, n] : unweighted)
      plan.notes.push_back(std::to_string(n) + " " + type + " tensors are encoded without the importance matrix (anvil has no "
                           "importance-weighted " + type + " encoder yet; llama-quantize --imatrix weights them)");
  }
  int64_t params = 0, expert_params = 0;
  for (const auto& j : plan.jobs) {
    const auto n = static_cast<int64_t>(j.info.numel());
    params += n;
    if (j.info.name.find("_exps.") != std::string::npos) expert_params += n;
  }
  const int64_t experts = plan.ctx.n_expert;
  provenance_metadata(plan.meta, input, mix, experts > 0 ? params - expert_params : params,
                      experts > 0 ? expert_params / experts : 0, experts, options);
  plan.meta.emplace_back("general.quantization_version", io::GgufValue::u32(2));
  plan.meta.emplace_back("general.file_type", io::GgufValue::u32(mix.file_type));
}

const QuantMix& mix_of(const GgufExportOptions& options) {
  const QuantMix* mix = find_quant_mix(options.type);
  if (!mix) {
    std::string list;
    for (auto n : quant_mix_names()) list += (list.empty() ? "" : ", ") + std::string(n);
    fail("quantization type '" + options.type + "'", "unknown (supported: " + list + ")");
  }
  return *mix;
}

// Runs a plan's jobs into the output file, chunk by chunk, in any order and from any thread.
struct GgufEncoding {
  Plan plan;
  const GgufExportOptions options;  // a copy: a stream outlives the options it was made with
  io::GgufWriter writer;
  std::vector<std::atomic<int64_t>> rows_left;
  std::atomic<int64_t> done{0};
  std::atomic<uint64_t> in_bytes{0}, out_bytes{0};
  std::mutex progress_mutex;
  std::chrono::steady_clock::time_point t0;

  static std::vector<io::GgufTensorInfo> infos(const Plan& p) {
    std::vector<io::GgufTensorInfo> out;
    for (const auto& j : p.jobs) out.push_back(j.info);
    return out;
  }
  GgufEncoding(Plan p, const fs::path& output, const GgufExportOptions& opts, std::chrono::steady_clock::time_point start)
      : plan(std::move(p)), options(opts), writer(output, plan.meta, infos(plan)), rows_left(plan.jobs.size()), t0(start) {
    for (size_t i = 0; i < plan.jobs.size(); ++i) rows_left[i] = row_count(plan.jobs[i]);
  }

  // The chunks of matrix `slice` of job `i` (all its matrices when slice < 0). Chunks never cross
  // matrices (each has its own importance); a matrix a custom encoder may take (GPTQ needs all
  // its rows at once) is one chunk.
  std::vector<Chunk> chunks(size_t i, int64_t slice = -1) const {
    const Job& j = plan.jobs[i];
    const int64_t rows = row_count(j);
    std::vector<Chunk> out;
    if (rows == 0) return out;  // an empty tensor: nothing to write
    const int64_t step = options.encoder && !j.hf_names.empty()
                             ? j.slice_rows
                             : std::max<int64_t>(1, kChunkElements / static_cast<int64_t>(j.info.dims[0]));
    for (int64_t s0 = slice < 0 ? 0 : slice * j.slice_rows; s0 < (slice < 0 ? rows : (slice + 1) * j.slice_rows);
         s0 += j.slice_rows)
      for (int64_t r = s0; r < s0 + j.slice_rows; r += step) out.push_back({i, r, std::min(step, s0 + j.slice_rows - r)});
    return out;
  }

  void run(const Chunk& c) {
    const Job& j = plan.jobs[c.job];
    const QuantType* type = find_quant_type(j.info.type);
    const int64_t row = static_cast<int64_t>(j.info.dims[0]);
    std::vector<float> w(static_cast<size_t>(c.rows * row));
    j.read_rows(c.row0, c.rows, w.data());
    const size_t slice = static_cast<size_t>(c.row0 / j.slice_rows);
    const float* importance = slice < j.importance.size() ? j.importance[slice] : nullptr;
    std::optional<std::vector<uint8_t>> custom;
    if (options.encoder && !j.hf_names.empty())
      custom = options.encoder(j.hf_names[slice], *type, w.data(), c.rows, row, importance);
    std::vector<uint8_t> bytes = custom ? std::move(*custom) : encode_rows(*type, w.data(), c.rows, row, importance);
    writer.write_part(j.info.name, static_cast<uint64_t>(c.row0 * type->row_bytes(row)), bytes);
    in_bytes += j.input_bytes * static_cast<uint64_t>(c.rows) / static_cast<uint64_t>(row_count(j));
    out_bytes += bytes.size();
    if ((rows_left[c.job] -= c.rows) > 0) return;
    const int64_t d = ++done;
    if (options.progress) {
      std::lock_guard lock(progress_mutex);
      options.progress(d, static_cast<int64_t>(plan.jobs.size()), in_bytes.load());
    }
  }

  void run_all(const std::vector<Chunk>& list) {
    tbb::parallel_for(size_t{0}, list.size(), [&](size_t i) { run(list[i]); });
  }

  GgufExportSummary commit(const fs::path& output) {
    writer.commit();
    GgufExportSummary s;
    s.notes = plan.notes;
    s.tensors = static_cast<int64_t>(plan.jobs.size());
    s.input_bytes = in_bytes;
    s.output_bytes = fs::file_size(output);
    s.tensor_bytes = out_bytes;
    for (const auto& j : plan.jobs) s.parameters += static_cast<int64_t>(j.info.numel());
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s;
  }
};

}  // namespace

// The tensors handed over by write() while their chunks run: jobs read them by name.
struct HfGgufStream::State {
  fs::path output;
  std::mutex mutex;
  std::map<std::string, io::TensorView> live;
  std::map<std::string, io::TensorSpec> specs;
  std::map<std::string, std::pair<size_t, int64_t>> slot;  // HF name -> (job, matrix in the job)
  std::unique_ptr<GgufEncoding> encoding;
};

HfGgufStream::HfGgufStream(const fs::path& model_dir, const std::vector<io::TensorSpec>& tensors, const fs::path& output,
                           const GgufExportOptions& options)
    : state_(std::make_unique<State>()) {
  const auto t0 = std::chrono::steady_clock::now();
  State& st = *state_;
  st.output = output;
  for (const auto& t : tensors) st.specs[t.name] = t;
  const QuantMix& mix = mix_of(options);
  ViewOf view_of = [&st](const std::string& name) -> const io::TensorView& {
    std::lock_guard lock(st.mutex);
    return st.live.at(name);
  };
  Plan plan = plan_hf(model_dir, tensors, mix, options, view_of);
  finish_plan(plan, model_dir, mix, false, options);
  for (size_t i = 0; i < plan.jobs.size(); ++i)
    for (size_t k = 0; k < plan.jobs[i].hf_names.size(); ++k) st.slot[plan.jobs[i].hf_names[k]] = {i, static_cast<int64_t>(k)};
  st.encoding = std::make_unique<GgufEncoding>(std::move(plan), output, options, t0);
  // Jobs of no Hugging Face tensor (llama3's rotary divisors) are written now.
  for (size_t i = 0; i < st.encoding->plan.jobs.size(); ++i)
    if (st.encoding->plan.jobs[i].hf_names.empty()) st.encoding->run_all(st.encoding->chunks(i));
}

HfGgufStream::~HfGgufStream() = default;

void HfGgufStream::write(const std::string& hf_name, std::span<const uint8_t> bytes) {
  State& st = *state_;
  auto slot = st.slot.find(hf_name);
  if (slot == st.slot.end()) return;  // a tied LM head: llama.cpp reuses token_embd
  const io::TensorSpec& spec = st.specs.at(hf_name);
  if (bytes.size() != spec.numel() * io::dtype_size(spec.dtype))
    fail(st.output.string(), "tensor '" + hf_name + "': " + std::to_string(bytes.size()) + " bytes handed over for " +
                                 std::to_string(spec.numel() * io::dtype_size(spec.dtype)));
  {
    std::lock_guard lock(st.mutex);
    st.live[hf_name] = io::TensorView{spec, bytes, st.output};
  }
  // Isolated: while this thread waits for the tensor's chunks it must not pick up another
  // caller's work (a merge worker would start merging, and holding, a second whole tensor).
  tbb::this_task_arena::isolate([&] { st.encoding->run_all(st.encoding->chunks(slot->second.first, slot->second.second)); });
  std::lock_guard lock(st.mutex);
  st.live.erase(hf_name);
}

GgufExportSummary HfGgufStream::commit() { return state_->encoding->commit(state_->output); }

GgufExportSummary export_gguf(const fs::path& input, const fs::path& output, const GgufExportOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  const QuantMix& mix = mix_of(options);
  tbb::task_arena arena(std::max(1, options.threads));
  if (model::is_gguf_file(input)) {
    io::GgufFile in(input);  // stays open (memory-mapped) while the jobs run
    Plan plan = plan_gguf(in, mix, options);
    finish_plan(plan, input, mix, true, options);
    GgufEncoding encoding(std::move(plan), output, options, t0);
    std::vector<Chunk> all;
    for (size_t i = 0; i < encoding.plan.jobs.size(); ++i)
      for (const auto& c : encoding.chunks(i)) all.push_back(c);
    arena.execute([&] { encoding.run_all(all); });
    return encoding.commit(output);
  }
  // A Hugging Face directory: each tensor handed over from the checkpoint's map, in parallel.
  io::Checkpoint ckpt(input);
  std::vector<io::TensorSpec> specs;
  for (const auto& name : ckpt.names()) specs.push_back(ckpt.get(name).spec);
  HfGgufStream stream(input, specs, output, options);
  arena.execute([&] {
    tbb::parallel_for(size_t{0}, specs.size(), [&](size_t i) { stream.write(specs[i].name, ckpt.get(specs[i].name).bytes); });
  });
  auto s = stream.commit();
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

HfFilesFromGguf hf_files_from_gguf(const io::GgufFile& gguf, const model::ModelConfig& c) {
  const fs::path& gguf_path = gguf.path();
  if (gguf.find_tensor("rope_freqs.weight"))
    fail(gguf_path.string(), "rope_freqs.weight (scaled rotary frequencies) has no config.json form anvil writes yet");
  // Validated before anything is written: the metadata against the tensors (the q/k permutation
  // divides rows by the head count) and the vocabulary.
  model::check_gguf_shapes(gguf, c);
  HfFilesFromGguf out;
  out.tokenizer_json = tokenizer::tokenizer_json_from_gguf(gguf);
  // tokenizer_config.json: the special tokens by name, the BOS/EOS flags and the chat template.
  nlohmann::ordered_json tokenizer_config = nlohmann::ordered_json::object();
  {
    const auto tok = tokenizer::Tokenizer::from_json(out.tokenizer_json, gguf_path.string());
    auto name = [&](const char* key, const char* field) {
      if (const io::GgufValue* v = gguf.find(key); v && v->as_int() && *v->as_int() >= 0 && *v->as_int() < tok.vocab_size())
        tokenizer_config[field] = tok.id_to_token(static_cast<int32_t>(*v->as_int()));
    };
    name("tokenizer.ggml.bos_token_id", "bos_token");
    name("tokenizer.ggml.eos_token_id", "eos_token");
    name("tokenizer.ggml.unknown_token_id", "unk_token");
    name("tokenizer.ggml.padding_token_id", "pad_token");
    tokenizer_config["add_bos_token"] = !tok.special_prefix().empty();
    tokenizer_config["add_eos_token"] = !tok.special_suffix().empty();
    if (const io::GgufValue* t = gguf.find("tokenizer.chat_template")) {
      if (!t->as_string()) fail(gguf_path.string(), "tokenizer.chat_template must be a string");
      chat::ChatTemplate::parse(*t->as_string(), gguf_path.string() + ": tokenizer.chat_template");  // refused now, not by transformers later
      tokenizer_config["chat_template"] = *t->as_string();
    }
  }
  out.tokenizer_config_json = tokenizer_config.dump(2) + "\n";
  return out;
}

void export_hf_from_gguf(const fs::path& gguf_path, const fs::path& out_dir, const std::string& dtype) {
  io::GgufFile gguf(gguf_path);
  auto c = model::ModelConfig::from_gguf(gguf);
  const QuantType* out_type = find_quant_type(dtype == "f32" || dtype == "float32"    ? "F32"
                                              : dtype == "f16" || dtype == "float16" ? "F16"
                                              : dtype == "bf16" || dtype == "bfloat16" ? "BF16"
                                                                                       : "");
  if (!out_type) fail("output dtype '" + dtype + "'", "unknown (supported: f32, f16, bf16)");
  const io::DType st_dtype = out_type->name == "F32" ? io::DType::F32 : out_type->name == "F16" ? io::DType::F16 : io::DType::BF16;
  const HfFilesFromGguf files = hf_files_from_gguf(gguf, c);
  const auto tensors = model::gguf_hf_tensors(gguf, c);
  std::vector<io::TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back({t.name, st_dtype, t.shape});
  io::AtomicDir out(out_dir);
  {
    io::ShardedWriter writer(out.temp_path(), specs, 5'000'000'000ull);
    tbb::parallel_for(size_t{0}, tensors.size(), [&](size_t i) {
      auto w = model::read_gguf_hf_tensor(gguf, c, tensors[i].name).values;
      std::vector<uint8_t> bytes(out_type->row_bytes(static_cast<int64_t>(w.size())));
      out_type->encode(w.data(), bytes.data(), static_cast<int64_t>(w.size()));
      writer.write(tensors[i].name, bytes);
    });
    writer.commit();
  }
  const std::string torch_dtype = out_type->name == "F32" ? "float32" : out_type->name == "F16" ? "float16" : "bfloat16";
  io::write_text_file(out.temp_path() / "config.json", c.to_hf_json(torch_dtype));
  io::write_text_file(out.temp_path() / "tokenizer.json", files.tokenizer_json);
  io::write_text_file(out.temp_path() / "tokenizer_config.json", files.tokenizer_config_json);
  out.commit();
}

}  // namespace anvil::quant

namespace anvil::quant {
std::string gguf_size_label(int64_t params, int64_t expert_params, int64_t experts) {
  if (experts > 0) return std::to_string(experts) + "x" + rounded_count(params + expert_params);
  return rounded_count(params);
}
}  // namespace anvil::quant
