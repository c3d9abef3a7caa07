#pragma once
// Which build of a per-instruction-set kernel runs (kernel/row_dot.cpp, quant/scale_search.cpp:
// each compiles one source for generic x86-64, AVX2 + FMA and AVX-512 F/BW/VL). The widest the
// CPU supports, narrowed by ANVIL_SIMD=avx2|generic (to measure what a narrower machine gets), or
// forced by tests.
#include <atomic>
#include <string_view>
#include <vector>

namespace anvil::simd {

enum class Level { generic = 0, avx2 = 1, avx512 = 2 };

std::string_view name(Level level);
Level cpu_level();                       // what this CPU runs
std::vector<std::string_view> levels();  // cpu_level() down to generic, by name

// Whether LibTorch computes bf16 natively here (AVX512-BF16 or AMX-BF16) rather than emulating it
// through fp32 conversions, which made a bf16 LoRA recipe ~30x slower than fp32 on AVX2-only CPUs.
// ANVIL_SIMD=avx2|generic, ATEN_CPU_CAPABILITY=avx2|default and ONEDNN_MAX_CPU_ISA=AVX2-or-below
// count as the narrower machine (they make LibTorch run as one).
bool native_bf16();

// One kernel family's choice: ANVIL_SIMD's (or the CPU's) level unless a test forced another.
class Choice {
 public:
  Level current() const;
  // "" restores the default; a level the CPU lacks fails naming `what`.
  void force(std::string_view level, std::string_view what);

 private:
  std::atomic<int> forced_{-1};
};

}  // namespace anvil::simd
