#pragma once
// Runs a merge config: checks the models agree, plans every output tensor (with its inputs and
// evaluated parameters) before reading any weights, then streams tensor by tensor, in parallel,
// into a sharded safetensors directory that appears only when complete.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "merge/merge_config.h"
#include "quant/gguf_export.h"

namespace anvil::merge {

// Where a gradient parameter (`t: [0, 0.5, 1]`) is evaluated for the tensors outside the layers.
enum class GradientRule {
  Current,  // mergekit since its 2025-03 multi-module planner: t = 0 for embeddings, final norm, LM head
  Legacy,   // mergekit before it: t = 0 for the embeddings, t = 1 for the final norm and LM head
};

struct MergeOptions {
  GradientRule gradient_rule = GradientRule::Current;
  std::string device = "cpu";            // cpu or cuda
  std::optional<std::string> out_dtype;  // overrides the config (bf16, f16, f32)
  uint64_t max_shard_bytes = 5'000'000'000ull;
  uint64_t seed = 0;
  int threads = 1;
  // Elementwise methods stream tensors in row chunks of about this many elements (fp32), which
  // bounds memory per worker to a few chunks instead of whole tensors.
  int64_t chunk_elements = 2 << 20;
  std::function<void(int64_t tensors_done, int64_t tensors_total, uint64_t bytes_done)> progress;
  // Called with the output's temporary directory when everything else is written, just before it
  // becomes the output: what it writes there (the model card) lands atomically with the model.
  // With a GGUF output (to_gguf set), it is called before any tensor is merged, with the
  // directory of small files (config.json, tokenizer, card) the GGUF's metadata is read from.
  std::function<void(const std::filesystem::path& temp_dir, uint64_t bytes_written)> before_commit;
  // Merge straight into one GGUF file of this type (F16, Q8_0, Q4_K_M, ... with an importance
  // matrix if given): each merged tensor is rounded to the output dtype, then encoded as
  // `anvil quantize` would encode the merged directory, without writing that directory.
  std::optional<quant::GgufExportOptions> to_gguf;
  // Or into memory, nothing written: each merged tensor (name, output dtype, shape) and its bytes
  // handed over as it is made, from any worker thread; the summary has the config.
  std::function<void(const io::TensorSpec& spec, std::span<const uint8_t> bytes)> to_memory;
};

struct MergeSummary {
  int64_t tensors = 0;
  int64_t layers = 0;
  uint64_t bytes_written = 0;
  size_t shards = 0;
  std::string out_dtype;
  double seconds = 0;
  std::string gguf_type;                // the GGUF file type written, if any
  std::vector<std::string> gguf_notes;  // what a GGUF output cannot say exactly, for the user
  std::string config_json;              // with to_memory: the merged model's config.json
};

MergeSummary run_merge(const MergeConfig& config, const std::filesystem::path& out_dir, const MergeOptions& options);

}  // namespace anvil::merge
