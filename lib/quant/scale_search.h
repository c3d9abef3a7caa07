#pragma once
// ggml's per-sub-block scale searches (make_qkx2_quants, make_qx_quants), run on up to 16
// sub-blocks at once: one SIMD lane per sub-block, each lane doing exactly the scalar code's
// float operations in the scalar code's order, so every result is bit-identical to ggml's.
// (Vectorizing within a sub-block would reorder its sums and change which level wins a tie.)
#include <cstdint>
#include <string_view>
#include <vector>

namespace anvil::quant {

// Asymmetric levels in [0, nmax] with a non-positive min: for each of `count` sub-blocks of n
// (<= 32) elements (sub-block k at x + k*n), a weighted least-squares fit of scale and min over
// nstep + 1 candidate level assignments; error |diff| with use_mad, diff^2 otherwise.
// Writes the levels to L (count*n), the scales, and the mins negated (>= 0, as ggml returns them).
void scale_min_search(int count, int n, int nmax, const float* x, const float* weights, uint8_t* L,
                      float* scales, float* neg_mins, float rmin, float rdelta, int nstep, bool use_mad);

// Symmetric levels in [-nmax, nmax-1], error weights x^2 or `weights`: 18 scales tried around
// nmax/max (make_qx_quants, rmse_type 1). L holds level + nmax.
void symmetric_scale_search(int count, int n, int nmax, const float* x, const float* weights, int8_t* L,
                            float* scales);

// The instruction-set builds of these searches this CPU can run ("avx512", "avx2", "generic"),
// best first; forcing one (tests compare them; "" = the best) applies process-wide.
std::vector<std::string_view> scale_search_isas();
void force_scale_search_isa(std::string_view isa);

}  // namespace anvil::quant
