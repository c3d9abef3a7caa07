// A LoRA training recipe: anvil::train::load_recipe(path, overrides). The input is the YAML text,
// optionally followed by a line "#overrides" and one --set style "key.path=value" per line. The
// recipe is written into a scratch directory holding models/base/config.json, data/train.txt and
// data/val.txt, the paths the seeds use, so that validation gets past the file checks.
#include <cstdint>

#include "fuzz_support.h"
#include "train/recipe.h"

namespace {

const std::filesystem::path& recipe_path() {
  static const std::filesystem::path path = [] {
    auto d = anvil::fuzz::scratch_dir() / "recipe";
    std::filesystem::create_directories(d / "models" / "base");
    std::filesystem::create_directories(d / "data");
    anvil::fuzz::write_file(d / "models" / "base" / "config.json", "{}\n");
    anvil::fuzz::write_file(d / "data" / "train.txt", "some text\n");
    anvil::fuzz::write_file(d / "data" / "val.txt", "more text\n");
    return d / "recipe.yaml";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = anvil::fuzz::as_text(data, size);
  std::vector<std::string> overrides;
  constexpr std::string_view kMarker = "\n#overrides\n";
  if (auto at = text.find(kMarker); at != std::string_view::npos) {
    std::string_view rest = text.substr(at + kMarker.size());
    text = text.substr(0, at + 1);
    while (!rest.empty() && overrides.size() < 16) {
      auto nl = rest.find('\n');
      overrides.emplace_back(rest.substr(0, nl));
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    }
  }
  anvil::fuzz::write_file(recipe_path(), text);
  try {
    auto r = anvil::train::load_recipe(recipe_path(), overrides);
    ANVIL_FUZZ_CHECK(!r.datasets.empty());
    ANVIL_FUZZ_CHECK(r.lora.r >= 1 && r.sequence_len >= 2);
    (void)r.lora.scale();
  } catch (const anvil::Error& e) {
    anvil::fuzz::rejected(e);
  }
  return 0;
}
