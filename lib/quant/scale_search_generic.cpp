// The scale searches built for generic; see scale_search_lanes.inc.
#define ANVIL_SIMD_ISA generic
#include "quant/scale_search_lanes.inc"
