// anvil extract-lora --base BASE --model FINETUNE -o ADAPTER_DIR --rank R: the fine-tune's
// difference from its base as a PEFT LoRA adapter (a truncated SVD per linear layer), for
// `anvil eval BASE --adapter ADAPTER_DIR`, PEFT, or merging elsewhere.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "commands.h"
#include "common.h"
#include "merge/extract_lora.h"
#include "progress.h"

namespace anvil::cli {

int run_extract_lora(int argc, char** argv) {
  cxxopts::Options options(argv[0], "Extract a fine-tune's difference from its base model as a PEFT LoRA adapter: "
                                    "each changed linear layer (and the token embedding) is factored by a truncated "
                                    "SVD, B = U sqrt(S), A = sqrt(S) V^T, lora_alpha = rank.");
  options.positional_help("--base BASE --model FINETUNE -o ADAPTER_DIR --rank R");
  options.add_options()
      ("base", "base model directory", cxxopts::value<std::string>())
      ("model", "fine-tuned model directory (same architecture and shapes)", cxxopts::value<std::string>())
      ("o,output", "adapter directory (written atomically)", cxxopts::value<std::string>())
      ("r,rank", "LoRA rank of every module (capped by its smaller dimension)", cxxopts::value<int64_t>())
      ("energy", "per module, the smallest rank (up to --rank) keeping this fraction of the difference's squared "
                 "norm, e.g. 0.9; modules of another rank go into rank_pattern/alpha_pattern", cxxopts::value<double>())
      ("no-embeddings", "leave the token embedding out (otherwise lora_embedding_A/B)")
      ("threads", "CPU threads (default: all cores)", cxxopts::value<int>())
      ("h,help", "show this help");
  auto parsed = parse_command(options, argc, argv,
                              {{"base", "--base BASE"}, {"model", "--model FINETUNE"}, {"output", "-o ADAPTER_DIR"},
                               {"rank", "--rank R"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  at::set_num_threads(thread_count(args));
  const auto base = existing_path(args["base"].as<std::string>(), "base model directory");
  const auto model = existing_path(args["model"].as<std::string>(), "fine-tuned model directory");
  merge::ExtractLoraOptions opts;
  opts.max_rank = args["rank"].as<int64_t>();
  if (opts.max_rank < 1 || opts.max_rank > (1 << 16)) throw UsageError("--rank must be 1 to 65536");
  if (args.count("energy")) {
    opts.energy = args["energy"].as<double>();
    if (!(*opts.energy > 0 && *opts.energy <= 1)) throw UsageError("--energy must be in (0, 1]");
  }
  opts.embeddings = args.count("no-embeddings") == 0;
  std::unique_ptr<Progress> bar;
  opts.progress = [&](int64_t done, int64_t total) {
    if (!bar) bar = std::make_unique<Progress>("extract-lora", total, "tensors");
    bar->update(done);
  };
  const std::filesystem::path out = args["output"].as<std::string>();
  const auto summary = merge::extract_lora(base, model, out, opts);
  if (bar) bar->finish();

  std::map<int64_t, int> ranks;
  double kept = 0;
  for (const auto& m : summary.modules) {
    ++ranks[m.rank];
    kept += m.kept;
  }
  std::string rank_text;
  for (const auto& [r, n] : ranks) rank_text += (rank_text.empty() ? "" : ", ") + std::to_string(n) + " x rank " + std::to_string(r);
  std::printf("%s: %zu modules (%s), mean kept energy %.1f%%, %.1f MB\n", out.string().c_str(), summary.modules.size(),
              rank_text.c_str(), 100.0 * kept / static_cast<double>(summary.modules.size()),
              static_cast<double>(summary.bytes_written) / 1e6);
  if (summary.unchanged > 0) std::printf("  %lld linear weights are the base's: not in the adapter\n", static_cast<long long>(summary.unchanged));
  if (!summary.not_decomposable.empty())
    std::printf("  %zu changed tensors are not matrices (norms, biases; e.g. %s): a LoRA cannot carry them, so the "
                "adapter does not reproduce them\n",
                summary.not_decomposable.size(), summary.not_decomposable.front().c_str());
  for (const auto& note : summary.notes) std::printf("  note: %s\n", note.c_str());
  return 0;
}

}  // namespace anvil::cli
