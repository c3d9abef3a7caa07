#pragma once
// Which BLAS the process actually resolved at run time (Debian picks libblas.so.3 through the
// alternatives system, and the reference BLAS is many times slower than OpenBLAS).
#include <optional>
#include <string>

namespace anvil {

struct BlasInfo {
  std::string library;              // resolved path of the loaded libblas / libopenblas
  std::string config;               // openblas_get_config() when available
  std::optional<int> threads;       // openblas_get_num_threads() when available
  bool is_reference = false;        // Netlib reference BLAS: slow
};

BlasInfo blas_info();
// Sets OpenBLAS's own thread pool size (LibTorch's set_num_threads does not reach it).
void set_blas_threads(int threads);

}  // namespace anvil
