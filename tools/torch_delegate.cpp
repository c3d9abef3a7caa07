#include "torch_delegate.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <vector>

#include "torch_paths.h"

namespace anvil::cli {
namespace {

std::vector<char*> g_argv;

}  // namespace

void remember_command_line(char** argv) {
  for (char** a = argv; *a; ++a) g_argv.push_back(*a);
  g_argv.push_back(nullptr);
}

int run_in_torch_binary(int, char**) {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  const auto torch_binary = self.parent_path() / "anvil-torch";
  std::fflush(nullptr);
  std::cout.flush();
  if (!ec) ::execv(torch_binary.c_str(), g_argv.data());
  std::cerr << "anvil: cannot run " << (ec ? std::string("anvil-torch") : torch_binary.string())
            << " (it does this command): " << std::strerror(ec ? ec.value() : errno) << "\n";
  std::exit(127);
}

int quantize_with_torch(const cxxopts::ParseResult&) { run_in_torch_binary(0, nullptr); }
int convert_merging_adapter(const cxxopts::ParseResult&) { run_in_torch_binary(0, nullptr); }

}  // namespace anvil::cli
