#pragma once
// llama.cpp's importance-matrix files, both kinds llama-imatrix writes and llama-quantize reads:
// - GGUF (general.type = "imatrix"): per weight `<name>.in_sum2` (F32 [cols, matrices]: the raw sum
//   over tokens of each input column's squared activation, one row per expert for a 3-D expert
//   stack) and `<name>.counts` (F32 [1, matrices]: tokens seen), with imatrix.datasets,
//   imatrix.chunk_count and imatrix.chunk_size;
// - the legacy .dat: entries of (name, ncall, mean * ncall per column), then the chunk count and
//   the dataset name.
// Names are GGUF tensor names ("blk.0.attn_q.weight"). No LibTorch.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace anvil::quant {

struct ImatrixEntry {
  std::vector<float> sums;    // cols * matrices; legacy: mean * ncall
  std::vector<double> counts; // per matrix; legacy: one value, ncall
};

struct Imatrix {
  std::map<std::string, ImatrixEntry> entries;  // GGUF weight name -> statistics
  std::vector<std::string> datasets;            // the calibration files, as given
  int64_t chunk_count = 0;                      // chunks of chunk_size tokens processed
  int64_t chunk_size = 0;
  bool legacy = false;

  // What llama-quantize weights the k-quant errors with: per weight, the mean squared activation
  // of each input column (sums / count per matrix; 1 where a matrix, an unrouted expert, saw no
  // tokens; legacy: the stored values over ncall), cols * matrices per weight.
  std::map<std::string, std::vector<float>> importance() const;
};

// Reads either kind (a GGUF by its magic, else the legacy layout). Every count and length is
// checked against the file; a malformed file fails naming it and the entry.
Imatrix read_imatrix(const std::filesystem::path& path);

// Writes atomically, tensors in name order as llama-imatrix does.
void write_imatrix_gguf(const std::filesystem::path& path, const Imatrix& m);
void write_imatrix_dat(const std::filesystem::path& path, const Imatrix& m);

}  // namespace anvil::quant
