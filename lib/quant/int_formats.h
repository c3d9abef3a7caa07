#pragma once
// The two integer safetensors layouts vLLM and transformers load, for a QuantizedMatrix:
//  - compressed-tensors "pack-quantized": X.weight_packed int32 [out, in*bits/32] (values offset
//    to unsigned, packed along the input dimension, first value in the lowest bits),
//    X.weight_scale [out, groups] in the model's dtype, X.weight_shape int64 [2].
//  - GPTQ v1 (AutoGPTQ): X.qweight int32 [in*bits/32, out] (packed along the input dimension of
//    the transposed weight), X.qzeros int32 [groups, out*bits/32] holding zero - 1 (the v1
//    convention), X.scales fp16 [groups, out], X.g_idx int32 [in].
// Reading supports both, GPTQ asymmetric and v2 zeros and act-order g_idx included.
#include <ATen/ATen.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "quant/int_quant.h"

namespace anvil::io {
class Checkpoint;
}

namespace anvil::quant {

enum class IntFormat { CompressedTensors, Gptq };

std::optional<IntFormat> parse_int_format(const std::string& name);  // "compressed-tensors" | "gptq"

// The tensors that replace `weight_name` ("...q_proj.weight") in the output, with their bytes.
std::vector<io::OwnedTensor> pack_int_weight(const std::string& weight_name, const QuantizedMatrix& m,
                                             const IntQuantSpec& spec, IntFormat format, io::DType scale_dtype);
// Their specs only (shapes and dtypes), for planning shards before any work.
std::vector<io::TensorSpec> packed_specs(const std::string& weight_name, int64_t out, int64_t in,
                                         const IntQuantSpec& spec, IntFormat format, io::DType scale_dtype);
// config.json's "quantization_config" (and, for GPTQ, the quantize_config.json content).
nlohmann::ordered_json quantization_config(IntFormat format, const IntQuantSpec& spec, bool calibrated);

// A quantized checkpoint's description, from its config.json; nullopt when it is not quantized.
struct IntCheckpoint {
  IntFormat format;
  int bits = 4;
  bool gptq_v2_zeros = false;  // GPTQ: zeros stored as is (v2) instead of zero - 1 (v1)
};
std::optional<IntCheckpoint> detect_int_checkpoint(const std::filesystem::path& model_dir);
// Whether `weight_name` is stored quantized, and its dequantized fp32 value [out, in].
bool has_int_weight(const io::Checkpoint& ckpt, const std::string& weight_name, const IntCheckpoint& info);
at::Tensor load_int_weight(const io::Checkpoint& ckpt, const std::string& weight_name, const IntCheckpoint& info);

// The same weight as integer levels and scales, W[r, k] = levels[r, k] * scales[r, group_of_column[k]]
// (GPTQ's zero points already subtracted): what the kernel computes from without expanding W.
struct IntLevels {
  at::Tensor levels;           // [out, in] int8 (int16 for 8-bit GPTQ, whose q - zero can reach 256)
  at::Tensor scales;           // [out, groups] fp32
  at::Tensor group_of_column;  // [in] int64 (GPTQ act-order: any order)
};
// Only output rows [row0, row0 + rows) when given (rows < 0: to the end), unpacking no more than
// those: a merge streams a quantized input chunk by chunk.
IntLevels load_int_levels(const io::Checkpoint& ckpt, const std::string& weight_name, const IntCheckpoint& info,
                          int64_t row0 = 0, int64_t rows = -1);
at::Tensor dequantize_levels(const IntLevels& levels);  // fp32 [out, in]

// The checkpoint as the model it stands for, in file order: plain tensors as they are, each
// quantized weight once under its ".weight" name with its [out, in] shape (companions hidden).
struct LogicalTensor {
  std::string name;
  std::vector<int64_t> shape;
  bool quantized = false;
};
std::vector<LogicalTensor> logical_tensors(const io::Checkpoint& ckpt, const IntCheckpoint& info);

}  // namespace anvil::quant
