// anvil env / anvil --version: what this build runs on, so that speed figures can be trusted.
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include <iostream>
#include <thread>

#include "commands.h"
#include "common.h"
#include "model_options.h"
#include "util/blas_info.h"
#include "version.h"

namespace anvil::cli {

int run_env(int argc, char** argv) {
  cxxopts::Options options(argv[0], "Show version, LibTorch, BLAS and thread settings.");
  options.add_options()("h,help", "show this help");
  add_runtime_options(options);
  auto parsed = parse_command(options, argc, argv);
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  apply_runtime_options(args);
  BlasInfo blas = blas_info();
  std::cout << "anvil " << ANVIL_VERSION << "\n"
            << "libtorch " << TORCH_VERSION << (at::hasCUDA() ? " (CUDA available)" : " (CPU)") << "\n"
            << "cpu threads: " << at::get_num_threads() << " of " << std::thread::hardware_concurrency() << " cores\n"
            << "blas: " << (blas.library.empty() ? "not loaded" : blas.library);
  if (!blas.config.empty()) std::cout << " [" << blas.config << "]";
  if (blas.threads) std::cout << ", " << *blas.threads << " threads";
  std::cout << "\n";
  if (blas.is_reference)
    std::cout << "warning: the reference BLAS is in use and is many times slower; install libopenblas0-pthread\n";
  return 0;
}

}  // namespace anvil::cli
