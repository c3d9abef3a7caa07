// The row dot kernels built for AVX-512 (F, BW, VL); see row_dot_lanes.inc.
#define ANVIL_SIMD_ISA avx512
#include "kernel/row_dot_lanes.inc"
