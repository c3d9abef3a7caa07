#include "model_cards.h"

#include <algorithm>

#include "io/atomic_file.h"
#include "version.h"

namespace anvil::cli {

CardBuilder::CardBuilder(int argc, char** argv) {
  // argv[0] is "anvil CMD" (or "anvil-torch CMD", which runs in its place): as the user typed it.
  std::string program = argc > 0 ? argv[0] : "anvil";
  if (program.rfind("anvil-torch ", 0) == 0) program.replace(0, 11, "anvil");
  card_.command = program + (argc > 1 ? " " + io::command_line(argc - 1, argv + 1) : "");
  card_.version = ANVIL_VERSION;
}

std::string method_display_name(const std::string& method) {
  static const std::pair<const char*, const char*> names[] = {
      {"linear", "Linear"}, {"slerp", "SLERP"}, {"task_arithmetic", "Task-arithmetic"}, {"ties", "TIES"},
      {"dare_linear", "DARE (linear)"}, {"dare_ties", "DARE-TIES"}, {"passthrough", "Passthrough"}};
  for (const auto& [id, name] : names)
    if (method == id) return name;
  return method;
}

void CardBuilder::add_input(const std::string& role, const std::filesystem::path& path) {
  const std::string name = io::card_name_of(path);
  for (const auto& in : card_.inputs)
    if (in.name == name) return;
  card_.inputs.push_back({role, name, path, io::read_card_front(path), {}});
}

void CardBuilder::start_hashing() {
  for (const auto& in : card_.inputs) digests_.push_back(std::make_unique<io::FileDigests>(io::model_files(in.path)));
}

io::ModelCard& CardBuilder::finish() {
  for (size_t i = 0; i < digests_.size() && i < card_.inputs.size(); ++i) card_.inputs[i].files = digests_[i]->get();
  return card_;
}

void write_card(const std::filesystem::path& dir, const io::ModelCard& card) {
  io::write_text_file(dir / "README.md", io::render_model_card(card));
}

}  // namespace anvil::cli
