#include "quant/scale_search.h"

#include "util/error.h"
#include "util/simd_level.h"

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
#if defined(ANVIL_SIMD_X86)
ANVIL_DECLARE_SEARCHES(avx2)
ANVIL_DECLARE_SEARCHES(avx512)
#endif

namespace {

using Isa = simd::Level;
simd::Choice g_choice;

}  // namespace

std::vector<std::string_view> scale_search_isas() { return simd::levels(); }

void force_scale_search_isa(std::string_view isa) { g_choice.force(isa, "scale search"); }

void scale_min_search(int count, int n, int nmax, const float* x, const float* weights, uint8_t* L, float* scales,
                      float* neg_mins, float rmin, float rdelta, int nstep, bool use_mad) {
  switch (g_choice.current()) {
#if defined(ANVIL_SIMD_X86)
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
  switch (g_choice.current()) {
#if defined(ANVIL_SIMD_X86)
    case Isa::avx512: return avx512::symmetric_scale_search(count, n, nmax, x, weights, L, scales);
    case Isa::avx2: return avx2::symmetric_scale_search(count, n, nmax, x, weights, L, scales);
#endif
    default: return generic::symmetric_scale_search(count, n, nmax, x, weights, L, scales);
  }
}

}  // namespace anvil::quant
