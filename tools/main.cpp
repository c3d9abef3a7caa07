// anvil: convert, quantize, merge, fine-tune and check LLM checkpoints. This file only dispatches.
#include <c10/util/Exception.h>

#include <malloc.h>

#include <cstring>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "version.h"

namespace {

using anvil::cli::Command;

constexpr Command kCommands[] = {
    {"inspect", "show a checkpoint's architecture, parameters, dtypes and tensors", anvil::cli::run_inspect},
    {"eval", "perplexity on text files, optionally KL divergence against a reference model", anvil::cli::run_eval},
    {"generate", "generate text from a prompt (greedy or sampled, KV cache)", anvil::cli::run_generate},
    {"convert", "Hugging Face directory <-> GGUF (f32/f16/bf16/q8_0)", anvil::cli::run_convert},
    {"quantize", "quantize to GGUF with llama.cpp's types and mixes (Q4_K_M, Q8_0, ...)", anvil::cli::run_quantize},
    {"merge", "merge models from a mergekit-style YAML config (linear, slerp, ties, dare, ...)", anvil::cli::run_merge},
    {"train", "LoRA fine-tuning from a YAML recipe; writes a PEFT adapter", anvil::cli::run_train},
    {"env", "show version, LibTorch, BLAS library and threads", anvil::cli::run_env},
};

void print_help() {
  std::cout << "anvil " << ANVIL_VERSION << ": convert, quantize, merge, fine-tune and check LLM checkpoints\n\n"
            << "usage: anvil <command> [options]    (anvil <command> --help for its options)\n\ncommands:\n";
  for (const auto& c : kCommands) std::printf("  %-10s %s\n", std::string(c.name).c_str(), std::string(c.summary).c_str());
  std::cout << "\nother: anvil --version | anvil --help\n";
}

// First line only: LibTorch messages carry multi-line backtraces.
std::string first_line(const char* what) {
  std::string s(what);
  return s.substr(0, s.find('\n'));
}

}  // namespace

int main(int argc, char** argv) {
  // Forward passes allocate and free the same large activations over and over; glibc would hand
  // each back to the kernel (mmap/munmap) and fault the pages in again. Keep them in the heap.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    print_help();
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) return anvil::cli::run_env(1, argv);
  for (const auto& c : kCommands) {
    if (c.name != argv[1]) continue;
    std::string prog = "anvil " + std::string(c.name);
    argv[1] = prog.data();
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const anvil::cli::UsageError& e) {
      std::cerr << prog << ": " << e.what() << " (see " << prog << " --help)\n";
      return 2;
    } catch (const anvil::Error& e) {
      std::cerr << prog << ": " << e.what() << "\n";
      return 2;
    } catch (const c10::Error& e) {
      std::cerr << prog << ": LibTorch error: " << first_line(e.what_without_backtrace()) << "\n";
      return 1;
    } catch (const std::exception& e) {
      std::cerr << prog << ": internal error: " << first_line(e.what()) << "\n";
      return 1;
    }
  }
  std::cerr << "anvil: unknown command '" << argv[1] << "' (see anvil --help)\n";
  return 2;
}
