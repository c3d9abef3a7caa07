// The row dot kernels built for AVX2 + FMA; see row_dot_lanes.inc.
#define ANVIL_SIMD_ISA avx2
#include "kernel/row_dot_lanes.inc"
