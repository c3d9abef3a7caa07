#pragma once
// The error boundary. lib/ throws anvil::Error for every failure caused by its input (a file, a
// key or tensor in it, a parameter): it carries where (the file, and the key or tensor) and the
// problem, and its message is the single line "WHERE: PROBLEM" the command line prints before
// exiting with status 2. Anything else that escapes is a bug in anvil ("internal error", exit 1).
// lib/ never names command-line flags: the same code runs behind the library API.
#include <stdexcept>
#include <string>

namespace anvil {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message), problem_(message) {}
  Error(std::string where, std::string problem)
      : std::runtime_error(where.empty() ? problem : where + ": " + problem),
        where_(std::move(where)),
        problem_(std::move(problem)) {}

  const std::string& where() const { return where_; }      // "file", "file:line" or "file: tensor 'x'"
  const std::string& problem() const { return problem_; }

 private:
  std::string where_, problem_;
};

// Throws Error(where, what): "WHERE: WHAT".
[[noreturn]] void fail(const std::string& where, const std::string& what);

}  // namespace anvil
