#include "dispatch.h"
#include "model_cards.h"

#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "common.h"
#include "io/temp_cleanup.h"
#include "version.h"

namespace anvil::cli {
namespace {

// A command as users type it: the table's identifiers with '-' for '_' (extract_lora -> extract-lora).
std::string command_label(std::string_view name) {
  std::string s(name);
  std::replace(s.begin(), s.end(), '_', '-');
  return s;
}

void print_help(std::span<const Command> commands) {
  std::cout << "anvil " << ANVIL_VERSION << ": convert, quantize, merge, fine-tune and check LLM checkpoints\n\n"
            << "usage: anvil <command> [options]    (anvil <command> --help for its options)\n\ncommands:\n";
  for (const auto& c : commands) std::printf("  %-13s %s\n", command_label(c.name).c_str(), std::string(c.summary).c_str());
  std::cout << "\nother: anvil --version | anvil --help\n";
}

}  // namespace

std::string first_line(const char* what) {
  std::string s(what);
  return s.substr(0, s.find('\n'));
}

// Messages quote names from strangers' files (keys, tensors, tokens): control characters are
// written as \xNN so that the message stays one line and cannot drive the terminal.
std::string printable(std::string_view message) {
  std::string out;
  out.reserve(message.size());
  for (char c : message) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

int dispatch(std::span<const Command> commands, int argc, char** argv, DescribeError describe,
             int (*fallback)(int argc, char** argv)) {
  // Forward passes allocate and free the same large activations over and over; glibc would hand
  // each back to the kernel (mmap/munmap) and fault the pages in again. Keep them in the heap.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  io::remove_temporaries_on_signal();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    print_help(commands);
    return argc < 2 ? 2 : 0;
  }
  const std::string_view wanted = !std::strcmp(argv[1], "--version") ? "env" : argv[1];
  for (const auto& c : commands) {
    if (command_label(c.name) != wanted) continue;
    if (!c.run) return fallback(argc, argv);
    std::string prog = "anvil " + command_label(c.name);
    argv[1] = prog.data();
    try {
      record_invocation(argc - 1, argv + 1);
      return c.run(argc - 1, argv + 1);
    } catch (const UsageError& e) {
      std::cerr << prog << ": " << printable(e.what()) << " (see " << prog << " --help)\n";
      return 2;
    } catch (const Error& e) {
      std::cerr << prog << ": " << printable(e.what()) << "\n";
      return 2;
    } catch (const std::filesystem::filesystem_error& e) {
      // The file system refused a path (too long, no permission, ...): the input's or the
      // machine's problem, not a bug; the path leads the line.
      std::cerr << prog << ": " << printable(e.path1().string()) << ": " << printable(e.code().message()) << "\n";
      return 2;
    } catch (const std::exception& e) {
      if (std::string d = describe ? describe(e) : ""; !d.empty()) std::cerr << prog << ": " << printable(d) << "\n";
      else std::cerr << prog << ": internal error: " << printable(first_line(e.what())) << "\n";
      return 1;
    }
  }
  std::cerr << "anvil: unknown command '" << argv[1] << "' (see anvil --help)\n";
  return 2;
}

}  // namespace anvil::cli
