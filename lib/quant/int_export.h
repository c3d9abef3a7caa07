#pragma once
// HF model directory -> INT4/INT8 safetensors directory (compressed-tensors pack-quantized or
// GPTQ v1), tensor by tensor: the linear weights of the blocks are quantized (round-to-nearest,
// or GPTQ with a calibration), everything else (embeddings, norms, lm_head, router) is copied.
// config.json gains quantization_config; the tokenizer files come along. Written atomically.
#include <cstdint>
#include <filesystem>
#include <functional>

#include "quant/int_formats.h"
#include "quant/int_quant.h"

namespace anvil::quant {

struct Calibration;

struct IntExportOptions {
  IntFormat format = IntFormat::CompressedTensors;
  IntQuantSpec spec;
  const Calibration* calibration = nullptr;  // GPTQ when given, round-to-nearest otherwise
  double damp = 0.01;
  std::function<void(int64_t tensors_done, int64_t tensors_total, uint64_t bytes_in)> progress;
};

struct IntExportSummary {
  int64_t quantized = 0, copied = 0;
  uint64_t output_bytes = 0;
};

IntExportSummary export_int_safetensors(const std::filesystem::path& hf_dir, const std::filesystem::path& out_dir,
                                        const IntExportOptions& options);

}  // namespace anvil::quant
