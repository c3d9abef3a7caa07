// The scale searches built for avx2; see scale_search_lanes.inc.
#define ANVIL_SIMD_ISA avx2
#include "quant/scale_search_lanes.inc"
