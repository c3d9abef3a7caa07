// anvil-torch: every subcommand, LibTorch loaded. Users run `anvil`, which executes this binary for
// the commands that need LibTorch; it also works when called directly.
#include <c10/util/Exception.h>

#include "commands.h"
#include "dispatch.h"

namespace {

#define ANVIL_COMMAND_ROW(name, summary, where) {#name, summary, anvil::cli::run_##name},
constexpr anvil::cli::Command kCommands[] = {ANVIL_COMMANDS(ANVIL_COMMAND_ROW)};
#undef ANVIL_COMMAND_ROW

std::string describe_torch_error(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e))
    return "LibTorch error: " + anvil::cli::first_line(c10->what_without_backtrace());
  return "";
}

}  // namespace

int main(int argc, char** argv) { return anvil::cli::dispatch(kCommands, argc, argv, describe_torch_error, nullptr); }
