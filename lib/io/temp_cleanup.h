#pragma once
// Temporaries of unfinished outputs (AtomicFile, AtomicDir) are removed when the process is
// interrupted (SIGINT, SIGTERM, SIGHUP), when their destructors never run: Ctrl-C leaves neither
// a half-written output nor a hidden temporary beside it.
#include <filesystem>

namespace anvil::io {

void register_temporary(const std::filesystem::path& path);  // a file or a directory of files
void unregister_temporary(const std::filesystem::path& path);

// Removes every registered temporary with system calls only (safe inside a signal handler).
void remove_registered_temporaries();

// Installs handlers for SIGINT, SIGTERM and SIGHUP that remove the temporaries, then die of the
// signal as the default action would.
void remove_temporaries_on_signal();

}  // namespace anvil::io
