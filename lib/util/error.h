#pragma once
// One exception type for every user-facing failure. The message is a single line that names
// the file (or object) and what is wrong with it; the CLI prints it and exits with status 2.
#include <stdexcept>
#include <string>

namespace anvil {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws Error("WHERE: WHAT").
[[noreturn]] void fail(const std::string& where, const std::string& what);

}  // namespace anvil
