// anvil eval MODEL --data FILE...: perplexity (and, with --compare, divergence from a reference).
#include <ATen/Parallel.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "model_options.h"
#include "eval/perplexity.h"
#include "io/atomic_file.h"
#include "progress.h"
#include "tokenizer/tokenizer.h"

namespace anvil::cli {

int run_eval(int argc, char** argv) {
  cxxopts::Options options(argv[0], "Perplexity of MODEL on text files: the text is tokenized without special "
                                    "tokens, cut into non-overlapping windows (the short tail dropped) and each "
                                    "window is scored on positions 1..window-1.");
  options.positional_help("MODEL --data FILE...");
  options.add_options()
      ("model", "model directory or .gguf file", cxxopts::value<std::string>())
      ("data", "text file(s) to score (repeat the flag or list them after it)", cxxopts::value<std::vector<std::string>>())
      ("more", "", cxxopts::value<std::vector<std::string>>())
      ("compare", "reference model: also report its perplexity, mean KL(ref || model) and top-1 agreement",
       cxxopts::value<std::string>())
      ("window", "tokens per window", cxxopts::value<int64_t>()->default_value("256"))
      ("batch", "windows per forward pass", cxxopts::value<int64_t>()->default_value("4"))
      ("json", "machine-readable output")
      ("adapter", "apply a PEFT LoRA adapter directory to MODEL", cxxopts::value<std::string>())
      ("h,help", "show this help");
  add_runtime_options(options);
  options.parse_positional({"model", "more"});
  auto parsed = parse_command(options, argc, argv, {{"model", "MODEL"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  std::vector<std::string> files;
  if (args.count("data")) files = args["data"].as<std::vector<std::string>>();
  if (args.count("more")) {
    if (!args.count("data")) throw UsageError("unexpected argument '" + args["more"].as<std::vector<std::string>>()[0] + "'");
    for (const auto& f : args["more"].as<std::vector<std::string>>()) files.push_back(f);
  }
  if (files.empty()) throw UsageError("missing --data FILE");
  if (args["window"].as<int64_t>() < 2) throw UsageError("--window must be at least 2");
  if (args["batch"].as<int64_t>() < 1) throw UsageError("--batch must be at least 1");
  auto model_dir = existing_path(args["model"].as<std::string>(), "model directory or .gguf file");
  for (const auto& f : files) existing_path(f, "data file");
  std::optional<std::filesystem::path> ref_dir;
  if (args.count("compare")) ref_dir = existing_path(args["compare"].as<std::string>(), "reference model");

  auto load = apply_runtime_options(args);
  auto tok = load_tokenizer(model_dir);
  auto model = load_model(model_dir, load, args.count("adapter") ? args["adapter"].as<std::string>() : "");
  tok.check_fits_model(model->config().vocab_size, model_dir.string());
  std::unique_ptr<model::Transformer> reference;
  if (ref_dir) {
    reference = load_model(*ref_dir, load);
    auto ref_tok = load_tokenizer(*ref_dir);
    if (ref_tok.vocab_size() != tok.vocab_size())
      fail(ref_dir->string(), "reference tokenizer differs from the model's (vocabulary sizes)");
  }

  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  const bool json = args.count("json");
  if (!json) {
    std::printf("model: %s (%s, %s params)\n", model_dir.string().c_str(), model->config().model_type.c_str(),
                with_commas(model->parameter_count()).c_str());
    if (ref_dir) std::printf("reference: %s\n", ref_dir->string().c_str());
    std::printf("%-28s %12s %10s %9s", "data", "perplexity", "tokens", "tok/s");
    if (ref_dir) std::printf(" %12s %10s %8s", "ref ppl", "mean KL", "top-1");
    std::printf("\n");
  }
  for (const auto& f : files) {
    auto tokens = tok.encode_file(f, /*add_special_tokens=*/false);
    eval::PerplexityOptions opts;
    opts.window = args["window"].as<int64_t>();
    opts.batch_windows = args["batch"].as<int64_t>();
    if (static_cast<int64_t>(tokens.size()) < opts.window)
      fail(f, "has " + std::to_string(tokens.size()) + " tokens, fewer than one window of " +
                  std::to_string(opts.window) + " (--window)");
    opts.threads = at::get_num_threads();
    Progress progress(std::filesystem::path(f).filename().string(),
                      static_cast<int64_t>(tokens.size()) / opts.window, "windows");
    auto t0 = std::chrono::steady_clock::now();
    opts.progress = [&](int64_t done, int64_t, int64_t tokens_done) {
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      char buf[48];
      std::snprintf(buf, sizeof buf, "%.0f tok/s", s > 0 ? tokens_done / s : 0.0);
      progress.update(done, buf);
    };
    auto r = eval::evaluate_perplexity(*model, tokens, opts, reference.get());
    progress.finish();
    if (json) {
      nlohmann::ordered_json row{{"data", f},
                                 {"perplexity", r.perplexity},
                                 {"tokens_scored", r.tokens_scored},
                                 {"tokens_processed", r.tokens_processed},
                                 {"seconds", r.seconds},
                                 {"tokens_per_second", r.tokens_per_second()}};
      if (ref_dir) {
        row["reference_perplexity"] = *r.reference_perplexity;
        row["mean_kl"] = *r.mean_kl;
        row["top1_agreement"] = *r.top1_agreement;
      }
      results.push_back(row);
    } else {
      std::printf("%-28s %12.4f %10lld %9.0f", std::filesystem::path(f).filename().string().c_str(), r.perplexity,
                  static_cast<long long>(r.tokens_scored), r.tokens_per_second());
      if (ref_dir) std::printf(" %12.4f %10.6f %7.2f%%", *r.reference_perplexity, *r.mean_kl, *r.top1_agreement * 100);
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  if (json) {
    nlohmann::ordered_json out{{"model", model_dir.string()}, {"results", results}};
    if (ref_dir) out["reference"] = ref_dir->string();
    std::cout << out.dump(2) << "\n";
  }
  return 0;
}

}  // namespace anvil::cli
