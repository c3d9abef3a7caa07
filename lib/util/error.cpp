#include "util/error.h"

namespace anvil {

void fail(const std::string& where, const std::string& what) {
  if (where.empty()) throw Error(what);
  std::string message;
  message.reserve(where.size() + 2 + what.size());
  message.append(where).append(": ").append(what);
  throw Error(message);
}

}  // namespace anvil
