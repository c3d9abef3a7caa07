// anvil: convert, quantize, merge, fine-tune and check LLM checkpoints. The light front end runs
// the commands that need no LibTorch itself and executes anvil-torch (next to it) for the others.
#include "commands.h"
#include "dispatch.h"
#include "torch_delegate.h"

namespace {

#define ANVIL_RUN_light(name) anvil::cli::run_##name
#define ANVIL_RUN_torch(name) nullptr
#define ANVIL_COMMAND_ROW(name, summary, where) {#name, summary, ANVIL_RUN_##where(name)},
constexpr anvil::cli::Command kCommands[] = {ANVIL_COMMANDS(ANVIL_COMMAND_ROW)};
#undef ANVIL_COMMAND_ROW

}  // namespace

int main(int argc, char** argv) {
  anvil::cli::remember_command_line(argv);
  return anvil::cli::dispatch(kCommands, argc, argv, nullptr, anvil::cli::run_in_torch_binary);
}
