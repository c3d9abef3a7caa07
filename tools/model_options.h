#pragma once
// Runtime options of the commands that compute with LibTorch (--threads, --device, --dtype) and
// loading a model the same way everywhere.
#include <cxxopts.hpp>
#include <filesystem>
#include <memory>
#include <string>

#include "model/transformer.h"

namespace anvil::cli {

// Adds --threads, --device and --dtype.
void add_runtime_options(cxxopts::Options& options);
// Applies --threads to LibTorch and OpenBLAS; returns where and in what dtype to compute.
model::LoadOptions apply_runtime_options(const cxxopts::ParseResult& args);

// A model directory (safetensors) or a llama.cpp .gguf file.
// With `adapter_dir`, a PEFT LoRA adapter is merged into the weights as they load.
std::unique_ptr<model::Transformer> load_model(const std::filesystem::path& path, const model::LoadOptions& options,
                                               const std::string& adapter_dir = "");

}  // namespace anvil::cli
