#pragma once
// The parts of light commands that need LibTorch. anvil-torch links their implementations
// (cmd_*_torch.cpp); the light front end links torch_delegate.cpp instead, which runs the whole
// command line again in anvil-torch. Each gets the command line already parsed and checked.
#include <cxxopts.hpp>

namespace anvil::cli {

int quantize_with_torch(const cxxopts::ParseResult& args);    // --calib, integer formats
int convert_merging_adapter(const cxxopts::ParseResult& args);  // --merge-adapter

}  // namespace anvil::cli
