#pragma once
// Shared by convert and quantize: runs a GGUF export with a progress bar and prints a summary.
#include <filesystem>
#include <string>

namespace anvil::cli {

int run_gguf_export(const std::filesystem::path& input, const std::filesystem::path& output, const std::string& type,
                    int threads);

}  // namespace anvil::cli
