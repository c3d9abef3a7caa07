#pragma once
// What both binaries' main() share: help, finding the subcommand, and turning exceptions into
// one-line errors and exit codes.
#include <exception>
#include <span>
#include <string>
#include <string_view>

#include "commands.h"

namespace anvil::cli {

// Describes an exception type only one binary knows (LibTorch's), or returns "" to fall back.
using DescribeError = std::string (*)(const std::exception& e);

// `--version` runs the `env` command. `fallback` runs a command whose `run` is null.
int dispatch(std::span<const Command> commands, int argc, char** argv, DescribeError describe,
             int (*fallback)(int argc, char** argv));

// First line only: LibTorch messages carry multi-line backtraces.
std::string first_line(const char* what);
// `message` with control characters written as \xNN: one line, safe for a terminal.
std::string printable(std::string_view message);

}  // namespace anvil::cli
