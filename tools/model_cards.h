#pragma once
// The model cards the commands write (lib/io/model_card.h renders them): what each command
// knows of its inputs, its method and its measurements, in the Hub's terms.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "io/file_digests.h"
#include "io/model_card.h"

namespace anvil::cli {

// A card begun when the command starts: the inputs are named and their files are hashed in the
// background while the command works.
// The command line as the user typed it ("anvil CMD ARGS", shell-quoted), recorded by dispatch.
void record_invocation(int argc, char** argv);
const std::string& invocation();

class CardBuilder {
 public:
  CardBuilder();
  CardBuilder(int argc, char** argv);
  // Adds an input (a model directory, a GGUF, an adapter) under `role`; duplicates are skipped.
  void add_input(const std::string& role, const std::filesystem::path& path);
  // Starts hashing the inputs' files; call once, after the last add_input.
  void start_hashing();
  // The card with the digests filled in (waits for them).
  io::ModelCard& finish();
  io::ModelCard& card() { return card_; }

 private:
  io::ModelCard card_;
  std::vector<std::unique_ptr<io::FileDigests>> digests_;
};

// "TIES", "SLERP", ...: a merge method as people write it.
std::string method_display_name(const std::string& method);

// Writes `card` as `dir`/README.md (atomically).
void write_card(const std::filesystem::path& dir, const io::ModelCard& card);

// The card of a GGUF written from `input` (convert, quantize): OUT.gguf.md beside it.
// A card for a model directory written by a lib function that committed it: README.md is added
// to the finished directory (atomically). The output's size is the directory's.
struct DirectoryCard {
  std::string title, summary, relation, library = "transformers";
  std::vector<std::string> tags;
};
void write_directory_card(CardBuilder& card, const std::filesystem::path& dir, const DirectoryCard& what);

// `card` was begun (and its input hashed) before the GGUF was written.
void write_gguf_card(CardBuilder& card, const std::filesystem::path& input, const std::filesystem::path& output,
                     const std::string& type, uint64_t output_bytes, double bits_per_weight, const std::string& calibration);

}  // namespace anvil::cli
