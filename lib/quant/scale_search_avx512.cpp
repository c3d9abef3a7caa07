// The scale searches built for avx512; see scale_search_lanes.inc.
#define ANVIL_SIMD_ISA avx512
#include "quant/scale_search_lanes.inc"
