#include "util/blas_info.h"

#include <dlfcn.h>
#include <link.h>

#include <climits>
#include <cstdlib>
#include <string_view>

namespace anvil {
namespace {

int collect(struct dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<std::string*>(data);
  std::string_view name = info->dlpi_name ? info->dlpi_name : "";
  if (out->empty() && (name.find("libblas") != std::string_view::npos ||
                       name.find("libopenblas") != std::string_view::npos)) {
    char resolved[PATH_MAX];
    *out = realpath(info->dlpi_name, resolved) ? resolved : std::string(name);
  }
  return 0;
}

}  // namespace

BlasInfo blas_info() {
  BlasInfo info;
  dl_iterate_phdr(collect, &info.library);
  if (auto get_config = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_config")))
    info.config = get_config();
  if (auto get_threads = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads")))
    info.threads = get_threads();
  info.is_reference = info.config.empty() && info.library.find("/blas/") != std::string::npos;
  return info;
}

void set_blas_threads(int threads) {
  static const auto set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set) set(threads);
}

bool blas_uses_openmp() {
  static const auto get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
  return get && get() == 2;  // 0 sequential, 1 pthreads, 2 OpenMP
}

std::optional<int> blas_threads() {
  static const auto get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (!get) return std::nullopt;
  return get();
}

}  // namespace anvil
