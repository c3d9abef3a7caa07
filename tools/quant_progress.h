#pragma once
// Shared by convert and quantize: runs a GGUF export with a progress bar and prints a summary.
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "io/model_card.h"
#include "quant/gguf_export.h"

namespace anvil::cli {

// The export with its progress bar (options.progress is set here), no summary (for
// intermediate files).
quant::GgufExportSummary export_gguf_with_progress(const std::filesystem::path& input,
                                                  const std::filesystem::path& output, quant::GgufExportOptions options);

// Scores a written output (quantize --eval): rows for its card, printed as they are measured.
using MeasureOutput = std::function<std::vector<io::CardMeasurement>(const std::filesystem::path& output)>;

// The export, its summary line and its card.
int run_gguf_export(const std::filesystem::path& input, const std::filesystem::path& output,
                    const quant::GgufExportOptions& options, const MeasureOutput& measure = {});

// The options for a plain export: a type and threads.
quant::GgufExportOptions export_options(const std::string& type, int threads);

// quantize --imatrix FILE (llama-imatrix's GGUF or legacy .dat, or anvil imatrix's): reads it and
// points `options` at its importance, with what llama-quantize records of it. Nothing for an
// empty path. Must outlive the export.
class ImatrixFileUse {
 public:
  ImatrixFileUse(const std::string& path, quant::GgufExportOptions& options);

 private:
  std::map<std::string, std::vector<float>> importance_;
};

}  // namespace anvil::cli
