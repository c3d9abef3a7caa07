#include "quant_progress.h"

#include <chrono>
#include <cstdio>
#include <memory>

#include "common.h"
#include "model_cards.h"
#include "progress.h"
#include "quant/imatrix_file.h"

namespace anvil::cli {

quant::GgufExportOptions export_options(const std::string& type, int threads) {
  quant::GgufExportOptions opts;
  opts.type = type;
  opts.threads = threads;
  return opts;
}

ImatrixFileUse::ImatrixFileUse(const std::string& path, quant::GgufExportOptions& options) {
  if (path.empty()) return;
  const quant::Imatrix m = quant::read_imatrix(path);
  importance_ = m.importance();
  options.importance = &importance_;
  options.imatrix_file = path;
  options.imatrix_dataset = m.datasets.empty() ? "" : m.datasets.front();
  options.imatrix_chunks = m.chunk_count;
  std::printf("imatrix: %zu entries from %s, computed on %lld chunks%s\n", importance_.size(), path.c_str(),
              static_cast<long long>(m.chunk_count), m.legacy ? " (legacy .dat)" : "");
}

quant::GgufExportSummary export_gguf_with_progress(const std::filesystem::path& input,
                                                  const std::filesystem::path& output, quant::GgufExportOptions opts) {
  std::unique_ptr<Progress> bar;
  opts.progress = [&](int64_t done, int64_t total, uint64_t bytes) {
    if (!bar) bar = std::make_unique<Progress>("gguf", total, "tensors");
    bar->update_bytes(done, bytes);
  };
  auto s = quant::export_gguf(input, output, opts);
  if (bar) bar->finish();
  for (const auto& note : s.notes) std::fprintf(stderr, "note: %s\n", note.c_str());
  return s;
}

int run_gguf_export(const std::filesystem::path& input, const std::filesystem::path& output,
                    const quant::GgufExportOptions& options, const MeasureOutput& measure) {
  // The card beside the file, once the file is complete (a GGUF holds its provenance keys itself);
  // its input is hashed while the export reads it.
  CardBuilder card;
  card.add_input("source", input);
  card.start_hashing();
  const auto s = export_gguf_with_progress(input, output, options);
  const std::string& type = options.type;
  std::printf("wrote %s: %s, %lld tensors, %s, %.2f bits/weight, from %s in %.3f s (%.0f MB/s of input)\n",
              output.string().c_str(), type.c_str(), static_cast<long long>(s.tensors),
              human_bytes(static_cast<double>(s.output_bytes)).c_str(), s.bits_per_weight(),
              human_bytes(static_cast<double>(s.input_bytes)).c_str(), s.seconds,
              s.seconds > 0 ? s.input_bytes / s.seconds / 1e6 : 0.0);
  std::fflush(stdout);
  if (measure) card.card().measurements = measure(output);
  std::string calibration = options.imatrix_dataset;
  if (!options.imatrix_file.empty()) calibration = "importance matrix " + options.imatrix_file + (calibration.empty() ? "" : " (" + calibration + ")");
  write_gguf_card(card, input, output, type, s.output_bytes, s.bits_per_weight(), calibration);
  return 0;
}

}  // namespace anvil::cli
