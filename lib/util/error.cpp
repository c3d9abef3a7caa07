#include "util/error.h"

namespace anvil {

void fail(const std::string& where, const std::string& what) { throw Error(where, what); }

}  // namespace anvil
