#include "quant/scale_search.h"

#include <atomic>
#include <cstdlib>

#include "util/error.h"

namespace anvil::quant {

// One build of the lane code per instruction set (scale_search_lanes.inc). All give identical
// results; wider vectors only run more lanes per instruction.
#define ANVIL_DECLARE_SEARCHES(isa)                                                                        \
  namespace isa {                                                                                          \
  void scale_min_search(int, int, int, const float*, const float*, uint8_t*, float*, float*, float, float, \
                        int, bool);                                                                        \
  void symmetric_scale_search(int, int, int, const float*, const float*, int8_t*, float*);                \
  }
ANVIL_DECLARE_SEARCHES(generic)
#if defined(ANVIL_SCALE_SEARCH_X86)
ANVIL_DECLARE_SEARCHES(avx2)
ANVIL_DECLARE_SEARCHES(avx512)
#endif

namespace {

enum class Isa { generic, avx2, avx512 };
constexpr std::string_view kIsaNames[] = {"generic", "avx2", "avx512"};

Isa cpu_isa() {
#if defined(ANVIL_SCALE_SEARCH_X86)
  return __builtin_cpu_supports("avx512f") ? Isa::avx512 : __builtin_cpu_supports("avx2") ? Isa::avx2 : Isa::generic;
#else
  return Isa::generic;
#endif
}

// ANVIL_SIMD=avx2|generic: a narrower build than the CPU has, as kernel/row_dot.cpp reads it.
Isa detect_isa() {
  const Isa best = cpu_isa();
  if (const char* env = std::getenv("ANVIL_SIMD"))
    for (int i = 0; i <= static_cast<int>(best); ++i)
      if (kIsaNames[i] == env) return static_cast<Isa>(i);
  return best;
}

std::atomic<int> g_forced{-1};

Isa best_isa() {
  static const Isa detected = detect_isa();
  const int forced = g_forced.load(std::memory_order_relaxed);
  return forced >= 0 ? static_cast<Isa>(forced) : detected;
}

}  // namespace

std::vector<std::string_view> scale_search_isas() {
  std::vector<std::string_view> out;
  for (int i = static_cast<int>(cpu_isa()); i >= 0; --i) out.push_back(kIsaNames[i]);
  return out;
}

void force_scale_search_isa(std::string_view isa) {
  if (isa.empty()) {
    g_forced = -1;
    return;
  }
  for (auto available : scale_search_isas())
    if (available == isa) {
      for (int i = 0; i < 3; ++i)
        if (kIsaNames[i] == isa) g_forced = i;
      return;
    }
  fail("scale search", "instruction set '" + std::string(isa) + "' is not available on this CPU");
}

void scale_min_search(int count, int n, int nmax, const float* x, const float* weights, uint8_t* L, float* scales,
                      float* neg_mins, float rmin, float rdelta, int nstep, bool use_mad) {
  switch (best_isa()) {
#if defined(ANVIL_SCALE_SEARCH_X86)
    case Isa::avx512:
      return avx512::scale_min_search(count, n, nmax, x, weights, L, scales, neg_mins, rmin, rdelta, nstep, use_mad);
    case Isa::avx2:
      return avx2::scale_min_search(count, n, nmax, x, weights, L, scales, neg_mins, rmin, rdelta, nstep, use_mad);
#endif
    default:
      return generic::scale_min_search(count, n, nmax, x, weights, L, scales, neg_mins, rmin, rdelta, nstep, use_mad);
  }
}

void symmetric_scale_search(int count, int n, int nmax, const float* x, const float* weights, int8_t* L,
                            float* scales) {
  switch (best_isa()) {
#if defined(ANVIL_SCALE_SEARCH_X86)
    case Isa::avx512: return avx512::symmetric_scale_search(count, n, nmax, x, weights, L, scales);
    case Isa::avx2: return avx2::symmetric_scale_search(count, n, nmax, x, weights, L, scales);
#endif
    default: return generic::symmetric_scale_search(count, n, nmax, x, weights, L, scales);
  }
}

}  // namespace anvil::quant
