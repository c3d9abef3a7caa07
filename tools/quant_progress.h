#pragma once
#include <functional>

#include "io/model_card.h"
// Shared by convert and quantize: runs a GGUF export with a progress bar and prints a summary.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "quant/gguf_export.h"

namespace anvil::cli {

// The export with its progress bar, no summary (for intermediate files).
quant::GgufExportSummary export_gguf_with_progress(const std::filesystem::path& input,
                                                  const std::filesystem::path& output, const std::string& type,
                                                  int threads, const std::map<std::string, std::vector<float>>* importance,
                                                  const quant::TensorEncoder& encoder, const std::string& imatrix_dataset = "",
                                                  int64_t imatrix_chunks = 0);

// Scores a written output (quantize --eval): rows for its card, printed as they are measured.
using MeasureOutput = std::function<std::vector<io::CardMeasurement>(const std::filesystem::path& output)>;

int run_gguf_export(const std::filesystem::path& input, const std::filesystem::path& output, const std::string& type,
                    int threads, const std::map<std::string, std::vector<float>>* importance = nullptr,
                    const quant::TensorEncoder& encoder = {}, const std::string& imatrix_dataset = "",
                    int64_t imatrix_chunks = 0, const MeasureOutput& measure = {});

}  // namespace anvil::cli
