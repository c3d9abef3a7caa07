#include "model/tensor_bridge.h"

#include "util/error.h"

namespace anvil::model {

at::ScalarType to_scalar_type(io::DType dtype) {
  switch (dtype) {
    case io::DType::BOOL: return at::kBool;
    case io::DType::U8: return at::kByte;
    case io::DType::I8: return at::kChar;
    case io::DType::I16: return at::kShort;
    case io::DType::F16: return at::kHalf;
    case io::DType::BF16: return at::kBFloat16;
    case io::DType::I32: return at::kInt;
    case io::DType::F32: return at::kFloat;
    case io::DType::F64: return at::kDouble;
    case io::DType::I64: return at::kLong;
    default: fail("", "dtype " + std::string(io::dtype_name(dtype)) + " has no LibTorch equivalent here");
  }
}

io::DType from_scalar_type(at::ScalarType type) {
  switch (type) {
    case at::kBool: return io::DType::BOOL;
    case at::kByte: return io::DType::U8;
    case at::kChar: return io::DType::I8;
    case at::kShort: return io::DType::I16;
    case at::kHalf: return io::DType::F16;
    case at::kBFloat16: return io::DType::BF16;
    case at::kInt: return io::DType::I32;
    case at::kFloat: return io::DType::F32;
    case at::kDouble: return io::DType::F64;
    case at::kLong: return io::DType::I64;
    default: fail("", std::string("unsupported tensor type ") + c10::toString(type));
  }
}

at::Tensor view_tensor(const io::TensorView& view) {
  auto type = to_scalar_type(view.spec.dtype);
  std::vector<int64_t> shape(view.spec.shape.begin(), view.spec.shape.end());
  if (view.bytes.empty()) return at::empty(shape, at::TensorOptions().dtype(type));
  return at::from_blob(const_cast<uint8_t*>(view.bytes.data()), shape, at::TensorOptions().dtype(type));
}

at::Tensor load_tensor(const io::TensorView& view, at::ScalarType dtype, at::Device device) {
  return view_tensor(view).to(device, dtype, /*non_blocking=*/false, /*copy=*/true).contiguous();
}

at::ScalarType parse_float_dtype(const std::string& name) {
  if (name == "f32" || name == "float32" || name == "float" || name == "fp32") return at::kFloat;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  if (name == "f16" || name == "float16" || name == "half" || name == "fp16") return at::kHalf;
  fail("dtype '" + name + "'", "expected f32, bf16 or f16");
}

}  // namespace anvil::model
