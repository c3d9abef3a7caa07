#include "util/simd_level.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <cstdlib>
#include <string>

#include "util/error.h"

namespace anvil::simd {
namespace {

constexpr std::string_view kNames[] = {"generic", "avx2", "avx512"};

Level default_level() {
  const Level best = cpu_level();
  if (const char* env = std::getenv("ANVIL_SIMD"))
    for (int i = 0; i <= static_cast<int>(best); ++i)
      if (kNames[i] == env) return static_cast<Level>(i);
  return best;
}

}  // namespace

std::string_view name(Level level) { return kNames[static_cast<int>(level)]; }

Level cpu_level() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    return Level::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Level::avx2;
#endif
  return Level::generic;
}

bool native_bf16() {
  bool cpu = false;
#if defined(__x86_64__)
  // CPUID directly: clang 14's __builtin_cpu_supports knows neither "avx512bf16" nor "amx-bf16".
  auto bit = [](unsigned leaf, unsigned subleaf, int reg, int b) {
    unsigned r[4] = {0, 0, 0, 0};
    if (!__get_cpuid_count(leaf, subleaf, &r[0], &r[1], &r[2], &r[3])) return false;
    return ((r[reg] >> b) & 1u) != 0;
  };
  cpu = bit(7, 1, 0, 5) /* EAX: AVX512_BF16 */ || bit(7, 0, 3, 22) /* EDX: AMX-BF16 */;
#endif
  if (!cpu || default_level() != Level::avx512) return false;
  const char* aten = std::getenv("ATEN_CPU_CAPABILITY");
  if (aten && (std::string_view(aten) == "avx2" || std::string_view(aten) == "default")) return false;
  const char* dnnl = std::getenv("ONEDNN_MAX_CPU_ISA");
  if (dnnl && std::string_view(dnnl).find("AVX512") == std::string_view::npos &&
      std::string_view(dnnl).find("AMX") == std::string_view::npos && std::string_view(dnnl) != "ALL")
    return false;
  return true;
}

std::vector<std::string_view> levels() {
  std::vector<std::string_view> out;
  for (int i = static_cast<int>(cpu_level()); i >= 0; --i) out.push_back(kNames[i]);
  return out;
}

Level Choice::current() const {
  static const Level chosen = default_level();
  const int forced = forced_.load(std::memory_order_relaxed);
  return forced >= 0 ? static_cast<Level>(forced) : chosen;
}

void Choice::force(std::string_view level, std::string_view what) {
  if (level.empty()) {
    forced_ = -1;
    return;
  }
  for (int i = static_cast<int>(cpu_level()); i >= 0; --i)
    if (kNames[i] == level) {
      forced_ = i;
      return;
    }
  fail(std::string(what), "instruction set '" + std::string(level) + "' is not available on this CPU");
}

}  // namespace anvil::simd
