#pragma once
// Importance matrices measured with anvil's kernel, as llama-imatrix measures them: per linear
// weight, the sum over tokens of each input column's squared activation and the tokens seen
// (an expert only the tokens routed to it), under GGUF names, so that the file is llama.cpp's.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "quant/imatrix_file.h"

namespace anvil::model {
class Transformer;
struct ModelConfig;
}  // namespace anvil::model

namespace anvil::quant {

// Sums of squares and token counts under Hugging Face weight names (what the model's input
// observer reports), before they are named and stacked as llama.cpp names them.
struct ColumnSquares {
  std::vector<double> sums;
  int64_t rows = 0;
};

// HF-named statistics -> llama.cpp's entries: GGUF names, each layer's experts stacked into one
// entry (cols x experts, counts per expert; an expert that saw no token counts 0). Weights with
// no llama.cpp name are left out.
Imatrix imatrix_from_columns(const model::ModelConfig& config, const std::map<std::string, ColumnSquares>& by_hf_name);

struct ImatrixOptions {
  int64_t chunk = 512;          // tokens per chunk (llama-imatrix -c)
  int64_t max_chunks = -1;      // at most this many chunks in all (--chunks); -1: every whole chunk
  bool process_output = false;  // also measure the output projection (--process-output)
  std::optional<int32_t> bos;   // replaces each chunk's first token, as llama-imatrix does when the vocabulary adds BOS
  int64_t chunks_per_forward = 4;  // llama-imatrix's default batch of 2048 tokens is 4 chunks
};

// Runs every whole chunk of each source in turn (chunks never cross sources: each file is its
// own text, tokenized with its BOS) and measures the inputs of the layers.
Imatrix collect_imatrix(model::Transformer& model, const std::vector<std::vector<int32_t>>& sources,
                        const std::vector<std::string>& dataset_names, const ImatrixOptions& options,
                        const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace anvil::quant
