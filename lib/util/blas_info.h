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
// OpenBLAS's thread pool size, cheaply (for guards taken per product); nullopt for another BLAS.
std::optional<int> blas_threads();
// OpenBLAS built on OpenMP: it runs single-threaded inside an OpenMP parallel region by itself, and
// its set_num_threads would also set OpenMP's (serialising ATen's parallel loops).
bool blas_uses_openmp();

// OpenBLAS single-threaded for the guard's lifetime (while data-parallel workers each run their
// own operators), restored afterwards.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : saved_(blas_uses_openmp() ? 1 : blas_threads().value_or(1)) {
    if (saved_ != 1) set_blas_threads(1);
  }
  ~SingleThreadedBlas() {
    if (saved_ != 1) set_blas_threads(saved_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int saved_;
};

}  // namespace anvil
