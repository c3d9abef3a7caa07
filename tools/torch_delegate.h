#pragma once
// The light front end hands commands that need LibTorch to anvil-torch by executing it with the
// same command line (exec, not a child: signals, exit codes and the terminal stay as they are).

namespace anvil::cli {

void remember_command_line(char** argv);  // main()'s argv, before dispatch rewrites argv[1]
[[noreturn]] int run_in_torch_binary(int argc, char** argv);

}  // namespace anvil::cli
