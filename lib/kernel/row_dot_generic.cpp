// The row dot kernels built for baseline x86-64 (or any CPU); see row_dot_lanes.inc.
#define ANVIL_SIMD_ISA generic
#include "kernel/row_dot_lanes.inc"
