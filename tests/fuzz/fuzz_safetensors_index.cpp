// model.safetensors.index.json: the input is the index of a checkpoint directory whose two shards
// (fixed, valid) hold tensors "a", "b" and "c"; Checkpoint must accept exactly the indexes that
// name real shards and put every tensor where the shards hold it.
#include <cstdint>

#include "fuzz_support.h"
#include "io/checkpoint.h"

namespace {

const std::filesystem::path& checkpoint_dir() {
  static const std::filesystem::path dir = [] {
    auto d = anvil::fuzz::scratch_dir() / "ckpt";
    std::filesystem::create_directories(d);
    using anvil::io::DType;
    std::vector<uint8_t> four(4, 1), eight(8, 2);
    anvil::io::write_safetensors(d / "model-00001-of-00002.safetensors",
                                 {{{"a", DType::F32, {1}}, four}, {{"b", DType::F16, {2, 2}}, eight}});
    anvil::io::write_safetensors(d / "model-00002-of-00002.safetensors", {{{"c", DType::I32, {1}}, four}});
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& dir = checkpoint_dir();
  anvil::fuzz::write_file(dir / "model.safetensors.index.json", anvil::fuzz::as_text(data, size));
  try {
    anvil::io::Checkpoint ckpt(dir);
    ANVIL_FUZZ_CHECK(ckpt.names().size() <= 3);
    for (const auto& name : ckpt.names()) {
      const auto& t = ckpt.get(name);
      ANVIL_FUZZ_CHECK(t.name() == name && t.spec.nbytes() == t.bytes.size());
    }
    ANVIL_FUZZ_CHECK(ckpt.total_bytes() <= 16);
  } catch (const anvil::Error& e) {
    anvil::fuzz::rejected(e);
  }
  return 0;
}
