#include "quant_progress.h"

#include <chrono>
#include <cstdio>
#include <memory>

#include "common.h"
#include "model_cards.h"
#include "progress.h"

namespace anvil::cli {

quant::GgufExportSummary export_gguf_with_progress(const std::filesystem::path& input,
                                                  const std::filesystem::path& output, const std::string& type,
                                                  int threads, const std::map<std::string, std::vector<float>>* importance,
                                                  const quant::TensorEncoder& encoder, const std::string& imatrix_dataset,
                                                  int64_t imatrix_chunks) {
  quant::GgufExportOptions opts;
  opts.imatrix_dataset = imatrix_dataset;
  opts.imatrix_chunks = imatrix_chunks;
  opts.importance = importance;
  opts.encoder = encoder;
  opts.type = type;
  opts.threads = threads;
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

int run_gguf_export(const std::filesystem::path& input, const std::filesystem::path& output, const std::string& type,
                    int threads, const std::map<std::string, std::vector<float>>* importance,
                    const quant::TensorEncoder& encoder, const std::string& imatrix_dataset, int64_t imatrix_chunks,
                    const MeasureOutput& measure) {
  // The card beside the file, once the file is complete (a GGUF holds its provenance keys itself);
  // its input is hashed while the export reads it.
  CardBuilder card;
  card.add_input("source", input);
  card.start_hashing();
  const auto s = export_gguf_with_progress(input, output, type, threads, importance, encoder, imatrix_dataset, imatrix_chunks);
  std::printf("wrote %s: %s, %lld tensors, %s, %.2f bits/weight, from %s in %.3f s (%.0f MB/s of input)\n",
              output.string().c_str(), type.c_str(), static_cast<long long>(s.tensors),
              human_bytes(static_cast<double>(s.output_bytes)).c_str(), s.bits_per_weight(),
              human_bytes(static_cast<double>(s.input_bytes)).c_str(), s.seconds,
              s.seconds > 0 ? s.input_bytes / s.seconds / 1e6 : 0.0);
  std::fflush(stdout);
  if (measure) card.card().measurements = measure(output);
  write_gguf_card(card, input, output, type, s.output_bytes, s.bits_per_weight(), imatrix_dataset);
  return 0;
}

}  // namespace anvil::cli
