// anvil convert --merge-adapter: base + PEFT LoRA adapter -> one Hugging Face directory.
#include <cstdio>

#include "common.h"
#include "model_cards.h"
#include "model/lora_adapter.h"
#include "torch_paths.h"

namespace anvil::cli {

int convert_merging_adapter(const cxxopts::ParseResult& args) {
  const std::filesystem::path input = args["input"].as<std::string>(), output = args["output"].as<std::string>();
  const std::string out_dtype = args.count("out-dtype") ? args["out-dtype"].as<std::string>() : "";
  const auto adapter_dir = existing_path(args["merge-adapter"].as<std::string>(), "adapter directory");
  CardBuilder card;
  card.add_input("base", input);
  card.add_input("adapter", adapter_dir);
  card.start_hashing();
  auto adapter = model::LoraAdapter::load(adapter_dir);
  model::write_merged_model(input, *adapter, output, out_dtype);
  write_directory_card(card, output, {input.filename().string() + " with " + adapter_dir.filename().string() + " merged in",
                                      "The PEFT LoRA adapter " + adapter_dir.filename().string() + " merged into " +
                                          input.filename().string() + " (" + std::to_string(adapter->adapted_weights().size()) +
                                          " weights updated): a full model with the adapter's training.",
                                      "finetune", "transformers", {"anvil", "lora", "merged-adapter"}});
  std::printf("wrote %s (base + adapter, %zu weights updated)\n", output.string().c_str(),
              adapter->adapted_weights().size());
  return 0;
}

}  // namespace anvil::cli
