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

const QuantType& source_type(const io::TensorView& v) {
  const QuantType* t = v.spec.dtype == io::DType::F32    ? find_quant_type("F32")
                       : v.spec.dtype == io::DType::F16  ? find_quant_type("F16")
                       : v.spec.dtype == io::DType::BF16 ? find_quant_type("BF16")
                                                         : nullptr;
  if (!t) fail(v.file.string(), "tensor '" + v.name() + "' has dtype " + std::string(io::dtype_name(v.spec.dtype)) +
                                    "; only F32, F16 and BF16 can be converted");
  return *t;
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
  const std::string name = fs::absolute(input).lexically_normal().filename().string();
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

// llama.cpp's 3-D expert tensor from the per-expert 2-D ones: dims {cols, rows, experts}.
Job expert_stack_job(const io::Checkpoint& ckpt, const std::string& name,
                     const std::vector<const io::TensorView*>& experts, const QuantMix& mix, const MixContext& ctx) {
  for (size_t e = 0; e < experts.size(); ++e)
    if (!experts[e] || experts[e]->spec.shape != experts[0]->spec.shape || experts[e]->spec.dtype != experts[0]->spec.dtype ||
        experts[e]->spec.shape.size() != 2)
      fail(ckpt.path().string(), name + ": expert " + std::to_string(e) + " is missing or differs in shape or dtype");
  const int64_t rows = experts[0]->spec.shape[0], cols = experts[0]->spec.shape[1];
  Job j;
  j.info.name = name;
  j.info.dims = {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows), experts.size()};
  j.info.type = choose_tensor_type(mix, ctx, name, cols, 3, find_quant_type("F32"))->ggml_type;
  j.slice_rows = rows;
  for (const auto* v : experts) {
    j.input_bytes += v->bytes.size();
    j.hf_names.push_back(v->name());
  }
  const QuantType& src = source_type(*experts[0]);
  j.read_rows = [experts, &src, rows, cols](int64_t row0, int64_t n, float* out) {
    const int64_t row_bytes = src.row_bytes(cols);
    while (n > 0) {  // one expert's run of rows at a time
      const int64_t e = row0 / rows, r = row0 % rows, take = std::min(n, rows - r);
      src.decode(experts[static_cast<size_t>(e)]->bytes.data() + r * row_bytes, out, take * cols);
      io::release_pages(experts[static_cast<size_t>(e)]->bytes.data() + r * row_bytes, static_cast<size_t>(take * row_bytes));
      row0 += take, n -= take, out += take * cols;
    }
  };
  return j;
}

// Jobs for a Hugging Face directory: every tensor under its role's GGUF name, with the family's
// value transforms (q/k rotary rows, Gemma's norm offset), experts stacked.
std::vector<Job> hf_jobs(const io::Checkpoint& ckpt, const model::ModelConfig& c, const QuantMix& mix,
                         const MixContext& ctx) {
  std::vector<Job> jobs;
  std::map<std::string, std::vector<const io::TensorView*>> stacks;  // stacked name -> its experts
  for (const auto& hf : ckpt.names()) {
    const auto role = model::parse_hf_name(*c.arch, hf);
    if (!role) fail(ckpt.path().string(), "tensor '" + hf + "' has no llama.cpp name (unsupported for GGUF)");
    if (c.tie_word_embeddings && role->role == model::TensorRole::Output) continue;  // llama.cpp reuses token_embd
    if (role->layer >= c.num_layers)
      fail(ckpt.path().string(), "tensor '" + hf + "' belongs to a layer config.json does not have (" +
                                     std::to_string(c.num_layers) + " layers)");
    if (model::is_expert(role->role)) {
      auto& experts = stacks[model::gguf_name_of(*role)];
      if (role->expert < 0 || role->expert >= c.num_experts)
        fail(ckpt.path().string(), "tensor '" + hf + "': expert index out of range (config.json: " +
                                       std::to_string(c.num_experts) + " experts)");
      experts.resize(static_cast<size_t>(c.num_experts), nullptr);
      experts[static_cast<size_t>(role->expert)] = &ckpt.get(hf);
      continue;
    }
    const std::string name = model::gguf_name_of(*role);
    const io::TensorView& v = ckpt.get(hf);
    Job j;
    j.info.name = name;
    j.info.dims.assign(v.spec.shape.rbegin(), v.spec.shape.rend());
    if (j.info.dims.empty()) j.info.dims = {1};  // a scalar: GGUF tensors have at least one dimension
    const int64_t row = static_cast<int64_t>(j.info.dims[0]);
    j.info.type = choose_tensor_type(mix, ctx, name, row, ggml_dimension_count(j.info.dims), find_quant_type("F32"))->ggml_type;
    j.input_bytes = v.bytes.size();
    j.hf_names = {hf};
    j.slice_rows = row_count(j);
    const model::GgufTransform transform = model::gguf_transform(c, role->role);
    const QuantType& src = source_type(v);
    const int64_t rows = row_count(j);
    j.read_rows = [&v, &src, transform, row, rows](int64_t row0, int64_t n, float* out) {
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
  for (const auto& [name, experts] : stacks)
    jobs.push_back(expert_stack_job(ckpt, name, experts, mix, ctx));
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

}  // namespace

GgufExportSummary export_gguf(const fs::path& input, const fs::path& output, const GgufExportOptions& options) {
  auto t0 = std::chrono::steady_clock::now();
  const QuantMix* mix = find_quant_mix(options.type);
  if (!mix) {
    std::string list;
    for (auto n : quant_mix_names()) list += (list.empty() ? "" : ", ") + std::string(n);
    fail("quantization type '" + options.type + "'", "unknown (supported: " + list + ")");
  }

  // Sources stay open (memory-mapped) while the jobs run.
  std::unique_ptr<io::Checkpoint> ckpt;
  std::unique_ptr<io::GgufFile> gguf_in;
  Metadata meta;
  std::vector<Job> jobs;
  MixContext ctx;
  std::vector<std::string> notes;
  const bool has_imatrix = options.importance && !options.importance->empty();
  if (model::is_gguf_file(input)) {
    gguf_in = std::make_unique<io::GgufFile>(input);
    auto c = model::ModelConfig::from_gguf(*gguf_in);
    model::check_gguf_shapes(*gguf_in, c);
    ctx = {c.num_layers, c.num_heads, c.num_kv_heads, c.tie_word_embeddings, c.num_experts, has_imatrix};
    for (const auto& [k, v] : gguf_in->metadata())
      if (k != "general.file_type" && k != "general.quantization_version") meta.emplace_back(k, v);
    jobs = gguf_jobs(*gguf_in, *mix, ctx);
  } else {
    auto c = model::ModelConfig::load(input);
    if (c.arch->gguf_arch.empty()) fail(input.string(), "anvil cannot write " + c.model_type + " models to GGUF yet");
    ckpt = std::make_unique<io::Checkpoint>(input);
    model::check_checkpoint_shapes(c, *ckpt, (input / "config.json").string());
    ctx = {c.num_layers, c.num_heads, c.num_kv_heads, c.tie_word_embeddings || !ckpt->contains("lm_head.weight"),
           c.num_experts, has_imatrix};
    model::check_gguf_can_describe(c, (input / "config.json").string());
    meta = model_metadata(c, fs::absolute(input).lexically_normal().filename().string());
    auto tok = tokenizer::Tokenizer::load(input);
    tok.check_fits_model(c.vocab_size, (input / "config.json").string());
    notes = tokenizer::gguf_vocabulary_caveats(tok);
    for (auto& kv : tokenizer::gguf_tokenizer_metadata(tok, c.bos_token_id.value_or(-1),
                                                        c.eos_token_ids.empty() ? -1 : c.eos_token_ids[0],
                                                        c.pad_token_id.value_or(-1), c.vocab_size))
      meta.push_back(std::move(kv));
    // The chat template travels with the vocabulary, as llama.cpp's converter writes it.
    if (const auto chat_template = chat::find_chat_template(input))
      meta.emplace_back("tokenizer.chat_template", io::GgufValue::str(chat_template->source));
    jobs = hf_jobs(*ckpt, c, *mix, ctx);
    if (c.rope.type == "llama3") {
      // llama.cpp's converter stores llama3 scaling as per-frequency divisors.
      auto divisors = std::make_shared<std::vector<float>>(model::llama3_rope_divisors(c.rope, c.rotary_dim));
      Job j;
      j.info.name = "rope_freqs.weight";
      j.info.dims = {divisors->size()};
      j.info.type = 0;
      j.read_rows = [divisors](int64_t, int64_t, float* out) { std::copy(divisors->begin(), divisors->end(), out); };
      jobs.insert(jobs.begin(), std::move(j));
    }
  }
  // llama-quantize writes each tensor with ggml's dimension count (trailing ones dropped); the
  // converter (an HF input to a float type) keeps the checkpoint's shape.
  if (mix->quantized() || gguf_in)
    for (auto& j : jobs) j.info.dims.resize(ggml_dimension_count(j.info.dims));
  for (auto& j : jobs) attach_importance(j, options);
  {
    // Q8_0 ignores an importance matrix in ggml too; other types without a weighted encoder here
    // would not match llama-quantize --imatrix: say so rather than differ silently.
    std::map<std::string, int> unweighted;
    for (const auto& j : jobs) {
      const QuantType* t = find_quant_type(j.info.type);
      if (!j.importance.empty() && t && t->block_elements > 1 && !t->encode_weighted && t->name != "Q8_0")
        ++unweighted[std::string(t->name)];
    }
    for (const auto& [type, n] : unweighted)
      notes.push_back(std::to_string(n) + " " + type + " tensors are encoded without the importance matrix (anvil has no "
                      "importance-weighted " + type + " encoder yet; llama-quantize --imatrix weights them)");
  }
  {
    int64_t params = 0, expert_params = 0;
    for (const auto& j : jobs) {
      const auto n = static_cast<int64_t>(j.info.numel());
      params += n;
      if (j.info.name.find("_exps.") != std::string::npos) expert_params += n;
    }
    const int64_t experts = ctx.n_expert;
    provenance_metadata(meta, input, *mix, experts > 0 ? params - expert_params : params,
                        experts > 0 ? expert_params / experts : 0, experts, options);
  }
  meta.emplace_back("general.quantization_version", io::GgufValue::u32(2));
  meta.emplace_back("general.file_type", io::GgufValue::u32(mix->file_type));

  std::vector<io::GgufTensorInfo> infos;
  for (const auto& j : jobs) infos.push_back(j.info);
  io::GgufWriter writer(output, meta, infos);
  GgufExportSummary s;
  s.notes = std::move(notes);
  std::atomic<int64_t> done{0};
  std::atomic<uint64_t> in_bytes{0}, out_bytes{0};
  std::mutex progress_mutex;
  std::vector<std::atomic<int64_t>> rows_left(jobs.size());
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const Job& j = jobs[i];
    const int64_t rows = row_count(j);
    rows_left[i] = rows;
    if (rows == 0) continue;  // an empty tensor: nothing to write
    // Chunks never cross matrices (each has its own importance). A matrix a custom encoder may
    // take (GPTQ needs all its rows at once) is one chunk.
    const int64_t slice_rows = j.slice_rows;
    const int64_t step = options.encoder && !j.hf_names.empty()
                             ? slice_rows
                             : std::max<int64_t>(1, kChunkElements / static_cast<int64_t>(j.info.dims[0]));
    for (int64_t s0 = 0; s0 < rows; s0 += slice_rows)
      for (int64_t r = s0; r < s0 + slice_rows; r += step)
        chunks.push_back({i, r, std::min(step, s0 + slice_rows - r)});
  }
  auto run = [&](const Chunk& c) {
    const Job& j = jobs[c.job];
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
      options.progress(d, static_cast<int64_t>(jobs.size()), in_bytes.load());
    }
  };
  tbb::task_arena arena(std::max(1, options.threads));
  arena.execute([&] { tbb::parallel_for(size_t{0}, chunks.size(), [&](size_t i) { run(chunks[i]); }); });
  writer.commit();
  s.tensors = static_cast<int64_t>(jobs.size());
  s.input_bytes = in_bytes;
  s.output_bytes = fs::file_size(output);
  s.tensor_bytes = out_bytes;
  for (const auto& j : jobs) s.parameters += static_cast<int64_t>(j.info.numel());
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
