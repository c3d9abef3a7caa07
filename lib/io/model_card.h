#pragma once
// Model cards: the README.md (YAML front matter in the Hugging Face Hub's spellings, then a short
// body) that says what an output was made from, how, and how good it measured. Inputs' own cards
// are read so that their license, base models and tags flow on.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "io/file_digests.h"

namespace anvil::io {

// What a card says of its model, in the Hub's terms (front matter).
struct CardFront {
  std::vector<std::string> base_model;
  std::string base_model_relation;  // quantized | merge | adapter | finetune | "" (a format conversion)
  std::string library_name;         // peft | transformers | gguf
  std::vector<std::string> tags;
  std::optional<std::string> license;
  std::vector<std::string> datasets;
  std::string pipeline_tag = "text-generation";
};

// An input of the command: how the card names it (its own card's id, else its path), and its files.
struct CardInput {
  std::string role;  // "base", "model", "adapter", "source"; "data" and "validation" are not models
  std::string name;
  std::filesystem::path path;
  std::optional<CardFront> card;  // the input's own card, when it has one
  std::vector<FileDigest> files;
};

// One row of a measurement table (perplexity on a file, optionally against a reference).
struct CardMeasurement {
  std::string model, data;
  double perplexity = 0;
  std::optional<double> kl, top1;  // against the reference, when one was compared
};

struct ModelCard {
  CardFront front;
  std::string title;    // e.g. "TIES merge of ft-fortune and ft-changelog"
  std::string summary;  // what was done, in the user's terms
  std::string command;  // the exact command line
  std::string version;  // anvil's
  std::string config, config_language;  // the config or recipe itself ("yaml")
  std::vector<CardInput> inputs;
  uint64_t output_bytes = 0;
  std::optional<double> bits_per_weight;
  std::vector<CardMeasurement> measurements;
  std::vector<std::string> notes;
};

std::string render_model_card(const ModelCard& card);

// The front matter of `path`'s card (README.md in a model directory), or nullopt when there is
// none. A card whose front matter is not YAML is an anvil::Error naming it.
std::optional<CardFront> read_card_front(const std::filesystem::path& model_path);
// The table under the card's "## Measured" heading, its lines as written (empty when none).
std::vector<std::string> read_card_measured(const std::filesystem::path& model_path);
// The name a card gives a model: its card's `model_name`/`model_id` key or, failing that, the
// path as given.
std::string card_name_of(const std::filesystem::path& model_path);

// Fills `card.front` from the model inputs (data files are no base models): base_model = their names; license when every input's
// card states the same one (else none, with a note); tags of the inputs' cards, then `tags`.
void inherit_from_inputs(ModelCard& card, const std::vector<std::string>& tags);

// The command line as one string, shell-quoted where needed.
std::string command_line(int argc, char** argv);

}  // namespace anvil::io
