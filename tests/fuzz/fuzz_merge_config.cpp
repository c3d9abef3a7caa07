// A mergekit-style merge config: MergeConfig::parse(text, where). `where` sits in a scratch
// directory holding models/base, models/ft-a and models/ft-b, the names the seeds use, so that
// model paths resolve and the parser gets past them.
#include <cstdint>

#include "fuzz_support.h"
#include "merge/merge_config.h"

namespace {

const std::filesystem::path& config_path() {
  static const std::filesystem::path path = [] {
    auto d = anvil::fuzz::scratch_dir() / "merge";
    for (const char* m : {"base", "ft-a", "ft-b"}) std::filesystem::create_directories(d / "models" / m);
    return d / "merge.yaml";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto c = anvil::merge::MergeConfig::parse(std::string(anvil::fuzz::as_text(data, size)), config_path());
    ANVIL_FUZZ_CHECK(!c.slices.empty());
    // Evaluate every parameter the way a merge does: per slice, per source model, at a few layer
    // positions, for a couple of tensor names.
    std::vector<std::string> names;
    for (const auto& [k, v] : c.parameters) names.push_back(k);
    for (const auto& s : c.slices) {
      ANVIL_FUZZ_CHECK(!s.sources.empty());
      for (const auto& [k, v] : s.parameters) names.push_back(k);
      for (const auto& src : s.sources)
        for (const auto& [k, v] : src.parameters) names.push_back(k);
    }
    if (names.size() > 64) names.resize(64);  // keeps a run short
    for (const auto& s : c.slices)
      for (const char* tensor : {"model.layers.0.self_attn.q_proj.weight", "lm_head.weight", ""})
        for (double t : {0.0, 0.37, 1.0}) {
          anvil::merge::ParameterReader reader(c, &s, tensor, t);
          for (const auto& n : names)
            for (const auto& src : s.sources) {
              const std::string model = src.path.string();
              (void)reader.get(n, &model);
            }
        }
  } catch (const anvil::Error& e) {
    anvil::fuzz::rejected(e);
  }
  return 0;
}
