#pragma once
// An INT4/INT8 checkpoint's weight (compressed-tensors or GPTQ, quant/int_formats.h) as a
// WeightMatrix: held as integer levels (one byte each; two for 8-bit GPTQ) and fp32 group scales,
// multiplied without expanding the matrix to fp32. INT4's levels take twice the packed file's
// bytes (a quarter of fp32's): unpacking once at load keeps the products simple for GPTQ's
// transposed packing and act-order groups alike.
#include "model/weight_matrix.h"
#include "quant/int_formats.h"

namespace anvil::quant {

model::WeightMatrixPtr int_matrix(IntLevels levels, int bits);

}  // namespace anvil::quant
