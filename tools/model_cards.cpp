#include "model_cards.h"

#include <algorithm>

#include "io/atomic_file.h"
#include "quant/quant_mix.h"
#include "version.h"

namespace anvil::cli {

namespace {
std::string& invocation_storage() {
  static std::string s = "anvil";
  return s;
}
std::string invocation_of(int argc, char** argv) {
  // argv[0] is "anvil CMD" (or "anvil-torch CMD", which runs in its place): as the user typed it.
  std::string program = argc > 0 ? argv[0] : "anvil";
  if (program.rfind("anvil-torch ", 0) == 0) program.replace(0, 11, "anvil");
  return program + (argc > 1 ? " " + io::command_line(argc - 1, argv + 1) : "");
}
}  // namespace

void record_invocation(int argc, char** argv) { invocation_storage() = invocation_of(argc, argv); }
const std::string& invocation() { return invocation_storage(); }

CardBuilder::CardBuilder() {
  card_.command = invocation();
  card_.version = ANVIL_VERSION;
}

CardBuilder::CardBuilder(int argc, char** argv) {
  card_.command = invocation_of(argc, argv);
  card_.version = ANVIL_VERSION;
}

std::string method_display_name(const std::string& method) {
  static const std::pair<const char*, const char*> names[] = {
      {"linear", "Linear"}, {"slerp", "SLERP"}, {"task_arithmetic", "Task-arithmetic"}, {"ties", "TIES"},
      {"dare_linear", "DARE (linear)"}, {"dare_ties", "DARE-TIES"}, {"passthrough", "Passthrough"},
      {"breadcrumbs", "Model Breadcrumbs"}, {"breadcrumbs_ties", "Model Breadcrumbs with TIES"}, {"della", "DELLA"},
      {"della_linear", "Linear DELLA"}, {"sce", "SCE"}, {"model_stock", "Model Stock"}, {"karcher", "Karcher mean"},
      {"multislerp", "Multi-SLERP"}, {"nuslerp", "NuSLERP"}, {"nearswap", "NearSwap"}};
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

namespace anvil::cli {

void write_directory_card(CardBuilder& b, const std::filesystem::path& dir, const DirectoryCard& what) {
  io::ModelCard& c = b.finish();
  c.title = what.title;
  c.summary = what.summary;
  c.front.base_model_relation = what.relation;
  c.front.library_name = what.library;
  io::inherit_from_inputs(c, what.tags);
  c.output_bytes = 0;
  for (const auto& f : io::model_files(dir)) c.output_bytes += std::filesystem::file_size(f);
  write_card(dir, c);
}

void write_gguf_card(CardBuilder& b, const std::filesystem::path& input, const std::filesystem::path& output,
                     const std::string& type, uint64_t output_bytes, double bits_per_weight, const std::string& calibration) {
  io::ModelCard& c = b.finish();
  // The type was checked before the export ran; its table row has the canonical spelling.
  const quant::QuantMix* mix = quant::find_quant_mix(type);
  const std::string upper = mix ? std::string(mix->name) : type;
  const bool quantized = mix && mix->quantized();
  const std::string source = std::filesystem::absolute(input).lexically_normal().filename().string();
  c.title = source + " " + upper + " GGUF";
  c.summary = quantized ? source + " quantized to " + upper + " with llama.cpp's types and per-tensor rules" +
                              (calibration.empty() ? "" : ", calibrated on " + calibration) + "."
                        : source + " converted to GGUF (" + upper + ").";
  c.front.base_model_relation = quantized ? "quantized" : "";
  c.front.library_name = "gguf";
  io::inherit_from_inputs(c, {"anvil", "gguf", upper});
  c.output_bytes = output_bytes;
  c.bits_per_weight = bits_per_weight;
  io::write_text_file(output.string() + ".md", io::render_model_card(c));
}

}  // namespace anvil::cli
