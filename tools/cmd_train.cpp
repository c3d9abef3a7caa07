// anvil train RECIPE.yaml: LoRA fine-tuning; writes a PEFT adapter, a JSONL log and a loss curve.
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "io/atomic_file.h"
#include "io/temp_cleanup.h"
#include "progress.h"
#include "model_cards.h"
#include "train/recipe.h"
#include "train/trainer.h"

namespace anvil::cli {
namespace {

std::atomic<bool> g_stop{false};

// The first Ctrl-C asks the loop to checkpoint and stop after the current step; a second one
// ends the process at once (removing unfinished outputs, as every command does).
void on_sigint(int) {
  g_stop = true;
  io::remove_temporaries_on_signal();
}

}  // namespace

int run_train(int argc, char** argv) {
  cxxopts::Options options(argv[0], "LoRA fine-tuning from a YAML recipe (schema: recipes/README.md). Writes "
                                    "adapter_config.json + adapter_model.safetensors (PEFT format), log.jsonl, "
                                    "loss.svg and checkpoint-N/ directories into the recipe's output_dir. Ctrl-C "
                                    "saves a checkpoint and stops; --resume continues it exactly.");
  options.positional_help("RECIPE.yaml");
  options.add_options()
      ("recipe", "recipe file", cxxopts::value<std::string>())
      ("set", "override a recipe key, e.g. --set lora.r=16 --set max_steps=50", cxxopts::value<std::vector<std::string>>())
      ("resume", "continue from a checkpoint-N directory, or the latest one in an output directory",
       cxxopts::value<std::string>())
      ("device", "cpu, cuda or auto (overrides the recipe)", cxxopts::value<std::string>())
      ("threads", "CPU threads (overrides the recipe; default: all cores)", cxxopts::value<int>())
      ("h,help", "show this help");
  options.parse_positional({"recipe"});
  auto parsed = parse_command(options, argc, argv, {{"recipe", "RECIPE.yaml"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  std::vector<std::string> overrides;
  if (args.count("set")) overrides = args["set"].as<std::vector<std::string>>();
  if (args.count("device")) overrides.push_back("device=" + args["device"].as<std::string>());
  if (args.count("threads")) overrides.push_back("threads=" + std::to_string(args["threads"].as<int>()));
  train::Recipe recipe = train::load_recipe(existing_path(args["recipe"].as<std::string>(), "recipe"), overrides);

  std::unique_ptr<Progress> progress;
  int64_t first_step = 0;
  train::TrainHooks hooks;
  hooks.info = [&](const std::string& line) { std::printf("%s\n", line.c_str()), std::fflush(stdout); };
  hooks.stop_requested = [] { return g_stop.load(); };
  hooks.on_step = [&](const train::LogEntry& e, int64_t total) {
    char extra[128];
    std::snprintf(extra, sizeof extra, "loss %.4f · lr %.2e · %s tok/s", e.loss, e.lr,
                  with_commas(static_cast<int64_t>(e.tokens_per_second)).c_str());
    if (progress) progress->update(e.step - first_step, extra);
    if (e.val_loss) {
      if (progress) progress->finish();
      std::printf("step %lld/%lld: loss %.4f, val loss %.4f (perplexity %.2f), %s tok/s\n",
                  static_cast<long long>(e.step), static_cast<long long>(total), e.loss, *e.val_loss,
                  std::exp(*e.val_loss), with_commas(static_cast<int64_t>(e.tokens_per_second)).c_str());
      std::fflush(stdout);
    }
  };

  // The card: the base model and the data, hashed while the trainer loads and tokenizes them.
  CardBuilder card(argc, argv);
  card.add_input("base", recipe.base_model);
  for (const auto& d : recipe.datasets) card.add_input("data", d.path);
  if (recipe.val_dataset) card.add_input("validation", recipe.val_dataset->path);
  card.start_hashing();

  train::Trainer trainer(recipe, hooks);
  std::printf("LoRA r=%lld alpha=%g on %s: %s trainable parameters\n", static_cast<long long>(recipe.lora.r),
              recipe.lora.alpha, recipe.base_model.string().c_str(), with_commas(trainer.trainable_parameters()).c_str());
  if (args.count("resume")) trainer.resume_from(existing_path(args["resume"].as<std::string>(), "checkpoint"));

  std::signal(SIGINT, on_sigint);
  first_step = trainer.first_step();
  progress = std::make_unique<Progress>("train", trainer.total_steps() - first_step, "steps");
  auto result = trainer.run();
  io::remove_temporaries_on_signal();
  progress->finish();
  if (result.interrupted) {
    std::printf("interrupted after step %lld; checkpoint saved in %s\nresume with: anvil train %s --resume %s\n",
                static_cast<long long>(result.steps_done), result.checkpoint.string().c_str(),
                args["recipe"].as<std::string>().c_str(), result.checkpoint.string().c_str());
    return 130;
  }
  if (result.initial_val_loss && result.final_val_loss)
    std::printf("val perplexity %.2f -> %.2f\n", std::exp(*result.initial_val_loss), std::exp(*result.final_val_loss));
  {
    io::ModelCard& c = card.finish();
    // Only the base model is a base model; the data files are the card's datasets.
    c.title = "LoRA adapter for " + recipe.base_model.filename().string();
    std::string data;
    for (const auto& d : recipe.datasets) data += (data.empty() ? "" : ", ") + d.path.filename().string() + " (" + d.type + ")";
    char what[256];
    std::snprintf(what, sizeof what, "LoRA r=%lld, alpha %g, on %s, trained for %lld steps", static_cast<long long>(recipe.lora.r),
                  recipe.lora.alpha, recipe.base_model.filename().string().c_str(), static_cast<long long>(result.steps_done));
    c.summary = std::string(what) + " on " + data + " with the recipe below; a PEFT adapter (adapter_config.json, "
                "adapter_model.safetensors).";
    c.config = io::read_text_file(recipe.file);
    c.config_language = "yaml";
    c.front.base_model_relation = "adapter";
    c.front.library_name = "peft";
    for (const auto& d : recipe.datasets) c.front.datasets.push_back(io::card_name_of(d.path));
    io::inherit_from_inputs(c, {"anvil", "lora", "peft"});
    if (result.initial_val_loss) c.measurements.push_back({recipe.base_model.filename().string() + " (before)", "validation", std::exp(*result.initial_val_loss), {}, {}});
    if (result.final_val_loss) c.measurements.push_back({"with this adapter", "validation", std::exp(*result.final_val_loss), {}, {}});
    std::error_code ec;
    c.output_bytes = std::filesystem::file_size(recipe.output_dir / "adapter_model.safetensors", ec);
    write_card(recipe.output_dir, c);
  }
  std::printf("adapter: %s (adapter_config.json, adapter_model.safetensors); log: log.jsonl, loss.svg\n",
              recipe.output_dir.string().c_str());
  return 0;
}

}  // namespace anvil::cli
