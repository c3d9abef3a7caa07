#pragma once
// The subcommand table. Each subcommand lives in its own cmd_*.cpp; adding one means writing
// that file and adding a row to kCommands in main.cpp.
#include <string_view>

namespace anvil::cli {

struct Command {
  std::string_view name;
  std::string_view summary;
  int (*run)(int argc, char** argv);  // argv[0] is "anvil NAME"
};

int run_inspect(int argc, char** argv);
int run_eval(int argc, char** argv);
int run_generate(int argc, char** argv);
int run_env(int argc, char** argv);
int run_merge(int argc, char** argv);
int run_convert(int argc, char** argv);
int run_quantize(int argc, char** argv);
int run_train(int argc, char** argv);

}  // namespace anvil::cli
