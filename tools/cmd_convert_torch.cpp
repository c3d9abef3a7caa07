// anvil convert --merge-adapter: base + PEFT LoRA adapter -> one Hugging Face directory.
#include <cstdio>

#include "common.h"
#include "model/lora_adapter.h"
#include "torch_paths.h"

namespace anvil::cli {

int convert_merging_adapter(const cxxopts::ParseResult& args) {
  const std::filesystem::path input = args["input"].as<std::string>(), output = args["output"].as<std::string>();
  const std::string out_dtype = args.count("out-dtype") ? args["out-dtype"].as<std::string>() : "";
  auto adapter = model::LoraAdapter::load(existing_path(args["merge-adapter"].as<std::string>(), "adapter directory"));
  model::write_merged_model(input, *adapter, output, out_dtype);
  std::printf("wrote %s (base + adapter, %zu weights updated)\n", output.string().c_str(),
              adapter->adapted_weights().size());
  return 0;
}

}  // namespace anvil::cli
