#pragma once
// Reading reference tensors (written by transformers) into LibTorch for comparisons.
#include <ATen/ATen.h>

#include <map>
#include <string>

#include "io/safetensors.h"
#include "model/tensor_bridge.h"

namespace anvil::test {

inline std::map<std::string, at::Tensor> load_reference(const std::filesystem::path& file) {
  io::SafetensorsFile f(file);
  std::map<std::string, at::Tensor> out;
  for (const auto& t : f.tensors()) out[t.name()] = model::view_tensor(t).clone();
  return out;
}

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace anvil::test
