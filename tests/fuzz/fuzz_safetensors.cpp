// safetensors header + data: the input is a whole .safetensors file (SafetensorsFile maps a path,
// so each input is written to a scratch file first).
#include <cstdint>

#include "fuzz_support.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto path = anvil::fuzz::scratch_dir() / "input.safetensors";
  anvil::fuzz::write_file(path, anvil::fuzz::as_text(data, size));
  try {
    anvil::io::SafetensorsFile f(path);
    // What the reader promises once it accepts a file: every tensor's bytes match its shape and
    // dtype, and the tensors tile the data area exactly.
    ANVIL_FUZZ_CHECK(f.header_size() + 8 <= size);
    const uint64_t data_size = size - 8 - f.header_size();
    uint64_t total = 0;
    const uint8_t* lo = nullptr;
    const uint8_t* hi = nullptr;
    unsigned sum = 0;
    for (const auto& t : f.tensors()) {
      ANVIL_FUZZ_CHECK(t.spec.nbytes() == t.bytes.size());
      ANVIL_FUZZ_CHECK(f.find(t.name()) == &t);
      total += t.bytes.size();
      if (!t.bytes.empty()) {
        if (!lo || t.bytes.data() < lo) lo = t.bytes.data();
        if (!hi || t.bytes.data() + t.bytes.size() > hi) hi = t.bytes.data() + t.bytes.size();
      }
      for (uint8_t b : t.bytes) sum += b;  // touches the view: out of the map is a SEGV
    }
    ANVIL_FUZZ_CHECK(total == data_size);
    ANVIL_FUZZ_CHECK(static_cast<uint64_t>(hi - lo) == total);
    for (const auto& [k, v] : f.metadata()) sum += static_cast<unsigned>(k.size() + v.size());
    asm volatile("" : : "r"(sum));
  } catch (const anvil::Error& e) {
    anvil::fuzz::rejected(e);
  }
  return 0;
}
