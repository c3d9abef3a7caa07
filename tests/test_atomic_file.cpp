// Outputs are whole or absent: an uncommitted output leaves nothing, and an interrupted process
// (Ctrl-C) leaves neither the output nor its hidden temporaries.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include "io/atomic_file.h"
#include "io/temp_cleanup.h"
#include "test_support.h"

using namespace anvil;

TEST(AtomicOutput, InterruptedProcessLeavesNothing) {
  test::TempDir dir;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // the child: half-written outputs, then Ctrl-C
    io::remove_temporaries_on_signal();
    io::AtomicDir out(dir / "merged");
    io::write_text_file(out.temp_path() / "config.json", "{}");
    io::AtomicFile shard(out.temp_path() / "model.safetensors");
    shard.append(std::string_view("half"));
    io::AtomicFile gguf(dir / "model.gguf");
    gguf.append(std::string_view("GGUF"));
    std::raise(SIGINT);
    ::_exit(3);  // not reached: the handler dies of the signal
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << status;
  EXPECT_EQ(test::count_entries(dir.path()), 0u);
}

TEST(AtomicOutput, CommittedOutputsAreNoLongerTemporaries) {
  test::TempDir dir;
  {
    io::AtomicDir out(dir / "d");
    io::write_text_file(out.temp_path() / "a.json", "{}");
    out.commit();
    io::write_text_file(dir / "f.txt", "x");
  }
  io::remove_registered_temporaries();  // what a signal would do now
  EXPECT_TRUE(std::filesystem::exists(dir / "d" / "a.json"));
  EXPECT_TRUE(std::filesystem::exists(dir / "f.txt"));
  EXPECT_EQ(test::count_entries(dir.path()), 2u);
}
